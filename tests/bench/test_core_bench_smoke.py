"""Smoke test of ``bench/core_bench.py --quick``: it runs, and prints one valid JSON line per
figure with the documented keys. No timing is asserted (the machine is shared).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ["calculate_p50_us", "calculate_p99_us", "commit_throughput_per_s"]
KEYS = {"figure", "value", "baseline", "ratio", "goal", "met"}


@pytest.mark.e2e
@pytest.mark.parametrize("db", [[], ["--postgres"]], ids=["sqlite", "postgres"])
def test_core_bench_quick_prints_figures(db: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "core_bench.py"), "--quick", *db],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [fig["figure"] for fig in lines] == FIGURES
    for fig in lines:
        assert set(fig) == KEYS, fig
        assert isinstance(fig["met"], bool)
        assert isinstance(fig["value"], int | float) and fig["value"] > 0
        assert isinstance(fig["baseline"], int | float) and fig["baseline"] > 0
        assert isinstance(fig["ratio"], int | float)
        assert isinstance(fig["goal"], str) and fig["goal"]
