"""The checked-in gRPC code in gateway/core_pb is exactly what proto/ generates."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "gateway" / "core_pb"


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(base: Path) -> set[str]:
    return {
        str(p.relative_to(base))
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".pyi")
    }


def test_regenerated_code_matches_checked_in(tmp_path: Path) -> None:
    gen = _generator()
    gen.generate(tmp_path)  # type: ignore[attr-defined]
    fresh, ours = _files(tmp_path), _files(CHECKED_IN)
    assert fresh == ours, f"only fresh {fresh - ours}, only checked in {ours - fresh}: run `make proto`"
    differing = [n for n in sorted(fresh) if not filecmp.cmp(tmp_path / n, CHECKED_IN / n, shallow=False)]
    assert not differing, f"generated code is stale in {differing}: run `make proto` and commit the result"


def test_service_has_the_issue_rpcs() -> None:
    from gateway.core_pb.loyalty.v1 import loyalty_pb2

    methods = set(loyalty_pb2.DESCRIPTOR.services_by_name["LoyaltyCoreService"].methods_by_name)
    required = {
        "GetProgram", "IdentifyCustomer", "RegisterCustomer", "Calculate", "Commit", "Refund",
        "Cancel", "StreamEvents", "GetBalances", "GetReport",
    }
    assert required <= methods
    stream = loyalty_pb2.DESCRIPTOR.services_by_name["LoyaltyCoreService"].methods_by_name["StreamEvents"]
    assert stream.client_streaming and stream.server_streaming
    names = (stream.input_type.name, stream.output_type.name)
    assert names == ("StreamEventsRequest", "StreamEventsResponse")
