"""Acceptance: ``posgw core --check-program FILE`` (a subprocess) accepts a valid program and
names every unknown key, with its path and the file, and exits non-zero.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.simulators.core.acceptance import PROGRAMS, ROOT


def check_program(path: Path) -> subprocess.CompletedProcess[str]:
    posgw = Path(sys.executable).parent / "posgw"
    argv = [str(posgw)] if posgw.exists() else [sys.executable, "-m", "gateway.cli"]
    return subprocess.run(
        [*argv, "core", "--check-program", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_check_program_names_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text((PROGRAMS / "seed002.toml").read_text(encoding="utf-8"), encoding="utf-8")
    ok = check_program(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    bad = tmp_path / "bad.toml"
    text = (PROGRAMS / "seed002.toml").read_text(encoding="utf-8")
    text = text.replace("min_spent = 0 }", 'min_spent = 0, colour = "red" }', 1) + "bogus_key = 1\n"
    bad.write_text(text, encoding="utf-8")
    proc = check_program(bad)
    out = proc.stdout + proc.stderr
    assert proc.returncode not in (0, None), out
    assert "bogus_key" in out
    assert "tiers[0].colour" in out
    assert "bad.toml" in out
