"""requirements.lock (what scripts/install.sh installs with pip --require-hashes) pins every runtime
dependency of pyproject.toml, each within its range and with sha256 hashes; `make audit` checks it
and is not part of `make test` (its vulnerability service is not reachable from the build machines)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from requirements.lock."""
    out: dict[str, tuple[str, list[str]]] = {}
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        found = re.match(r"([A-Za-z0-9_.\-]+)==([^\s\\]+)", entry)
        if found:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
            out[canonicalize_name(found.group(1))] = (found.group(2), hashes)
    return out


def test_every_runtime_dependency_is_pinned_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = locked()
    assert len(pins) >= len(project["dependencies"])
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run make lock"
        version = pins[name][0]
        assert req.specifier.contains(version), f"{req.name}=={version} is outside {req.specifier}: make lock"
    assert all(hashes for _, hashes in pins.values()), "every pin carries its sha256 hashes"


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_audit_runs_pip_audit_on_the_lock_and_make_test_does_not() -> None:
    def dry(target: str) -> str:
        done = subprocess.run(["make", "-n", "-o", ".venv/.installed", target], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout

    assert "pip-audit" in dry("audit") and "requirements.lock" in dry("audit")
    assert "pip-audit" not in dry("test")
