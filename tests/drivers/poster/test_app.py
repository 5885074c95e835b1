"""The Poster platform app's logic under Node's built-in test runner (skipped without Node)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[3] / "drivers" / "poster" / "app"


def test_app_logic_with_node_test_runner() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the app tests (drivers/poster/app/*.test.js) need node --test")
    done = subprocess.run([node, "--test", str(APP)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# pass 4" in done.stdout and "# fail 0" in done.stdout, done.stdout
