"""Generate the Python gRPC code of ``proto/`` into a package directory.

``python scripts/gen_proto.py [OUT_DIR]`` (default ``gateway/core_pb``). protoc writes
``from loyalty.v1 import ...`` imports; they are rewritten to the package path so the
generated modules import as ``gateway.core_pb.loyalty.v1``. The test suite runs this into a
temporary directory and diffs the result against the checked-in copy.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = "gateway.core_pb"


def generate(out_dir: Path) -> list[Path]:
    """Generate into ``out_dir``; return the written files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written: list[Path] = []
    for path in sorted(out_dir.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        text = path.read_text()
        fixed = re.sub(r"^from loyalty\.", f"from {PACKAGE}.loyalty.", text, flags=re.M)
        path.write_text(fixed)
        written.append(path)
    for directory in [out_dir, *[p for p in out_dir.rglob("*") if p.is_dir()]]:
        if directory.name == "__pycache__":
            continue
        init = directory / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated from proto/ by scripts/gen_proto.py; never edit by hand."""\n')
            written.append(init)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "gateway" / "core_pb"
    generate(target)
