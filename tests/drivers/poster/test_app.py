"""The Poster platform app (drivers/poster/app) under Node's built-in test runner, against the model
of the terminal's Poster object (poster-model.js). Skipped when Node is absent, failed then under
CI=true (CI machines have Node)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[3] / "drivers" / "poster" / "app"


def node_or_skip(environ: dict[str, str] | None = None) -> str:
    """The ``node`` executable; without one, skip saying why (fail under ``CI=true``)."""
    node = shutil.which("node")
    if node is not None:
        return node
    reason = "Node.js is not installed: the app tests (drivers/poster/app/*.test.js) need node --test"
    if (os.environ if environ is None else environ).get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def declared_tests() -> int:
    """How many tests the app's test files declare (each ``test('…', …)`` at the start of a line)."""
    return sum(len(re.findall(r"^test\(", f.read_text(), flags=re.MULTILINE)) for f in APP.glob("*.test.js"))


def test_app_logic_with_node_test_runner() -> None:
    done = subprocess.run([node_or_skip(), "--test", str(APP)], capture_output=True, text=True, timeout=120,
                          check=False, cwd=APP)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    expected = declared_tests()
    assert expected >= 17 and f"# pass {expected}\n" in done.stdout and "# fail 0" in done.stdout, done.stdout


def test_without_node_the_app_tests_skip_locally_and_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(pytest.skip.Exception, match=r"Node\.js is not installed"):
        node_or_skip({})
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        node_or_skip({"CI": "true"})
