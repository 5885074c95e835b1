"""Smoke test of ``bench/drivers_bench.py --quick``: one gateway with the four drivers against the
discounting stub core; it prints one valid JSON line per figure with the documented keys and
names. No timing is asserted (shared machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDORS = ["evotor", "modulkassa", "poster", "onec", "moysklad"]
GOALS = {"onec": 1.5, "moysklad": 1.5}  # SOAP: XML costs more than JSON (issue 14); MoySklad (issue 16)
FIGURES = [f"calc_p{pct}_{d}_vs_native" for pct in (50, 99) for d in VENDORS]
KEYS = {"figure", "value", "baseline", "ratio", "goal", "met"}


@pytest.mark.e2e
def test_drivers_bench_quick_prints_figures() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "drivers_bench.py"), "--quick"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [fig["figure"] for fig in lines] == FIGURES
    for fig in lines:
        assert set(fig) == KEYS, fig
        assert isinstance(fig["value"], float) and fig["value"] > 0, fig
        assert isinstance(fig["baseline"], float) and fig["baseline"] > 0, fig
        assert fig["ratio"] == pytest.approx(fig["value"] / fig["baseline"], abs=0.002), fig
        if fig["figure"].startswith("calc_p50_"):
            goal = GOALS.get(fig["figure"].split("_")[2], 1.2)
            assert fig["goal"] == goal and fig["met"] is (fig["ratio"] <= goal), fig
        else:
            assert fig["goal"] is None and fig["met"] is None, fig
