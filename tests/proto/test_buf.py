"""The core's API contract with buf: ``buf lint`` (STANDARD rules, the pre-buf names listed in
proto/buf.yaml) and ``buf breaking`` against the committed image proto/api-image.json, so a change
that would break gateways in the field fails here. A deliberate break (a new major version, or
the rename of issue 19) updates the image in the same commit:
``buf build proto --exclude-source-info -o proto/api-image.json``.

buf comes from the ``buf-bin`` package (dev dependencies). Without it the test is skipped, or
fails when ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
IMAGE = PROTO / "api-image.json"
TIMEOUT_S = 120


def buf() -> str:
    found = Path(sys.executable).parent / "buf"
    path = str(found) if found.exists() else shutil.which("buf")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but buf is not installed (pip install -e '.[dev]' brings buf-bin)")
        pytest.skip("buf is not installed (pip install -e '.[dev]' brings buf-bin)")
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([buf(), *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)


def test_lint_is_clean() -> None:
    done = run("lint", "proto")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_api_does_not_break_the_committed_image() -> None:
    done = run("breaking", "proto", "--against", str(IMAGE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_breaking_change_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "proto"
    shutil.copytree(PROTO, copy)
    source = copy / "loyalty" / "v1" / "loyalty.proto"
    text = source.read_text(encoding="utf-8")
    assert "  int64 redeem_points = 3;" in text
    moved = text.replace("  int64 redeem_points = 3;", "  int64 redeem_points = 33;")  # a field renumbered
    source.write_text(moved, encoding="utf-8")
    done = run("breaking", str(copy), "--against", str(IMAGE))
    assert done.returncode != 0
    assert "redeem_points" in done.stdout + done.stderr
