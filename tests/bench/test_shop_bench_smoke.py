"""Smoke test of ``bench/shop_bench.py --quick``: eight tills asking calculate then committing a
sale a second against a real gateway whose core link is cut and restored; it prints its figures,
and every sale the tills tried was acknowledged (outages included). No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ["shop_calc_p50_ms", "shop_calc_p99_ms", "shop_commit_p50_ms", "shop_commit_p99_ms",
           "shop_cpu_us_per_sale", "shop_cpu_us_per_sale_intake", "shop_cpu_us_per_event_delivery",
           "shop_rss_mb_max", "shop_sales_unanswered"]


@pytest.mark.e2e
def test_shop_bench_quick_prints_figures() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "shop_bench.py"), "--quick"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = {fig["figure"]: fig for fig in map(json.loads, proc.stdout.splitlines()) if fig}
    assert list(figures) == FIGURES
    unanswered = figures["shop_sales_unanswered"]
    assert unanswered["value"] == 0 and unanswered["baseline"] > 0 and unanswered["met"], unanswered
    for name in FIGURES[:-1]:
        assert figures[name]["value"] > 0 and figures[name]["baseline"] > 0, figures[name]
