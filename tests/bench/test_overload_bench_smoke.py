"""Smoke test of ``bench/overload_bench.py --quick``: a real gateway admitting 32 requests at once,
320 tills asking without pause; it prints its three figures, some answers were the fast "retry"
and none were transport errors. No timing or memory goal is asserted (shared machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_overload_bench_quick_prints_figures() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "overload_bench.py"), "--quick"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = {fig["figure"]: fig for fig in map(json.loads, proc.stdout.splitlines()) if fig}
    assert list(figures) == ["rss_peak_vs_idle", "busy_share", "admitted_p99_ms_vs_unloaded"]
    assert figures["rss_peak_vs_idle"]["value"] >= figures["rss_peak_vs_idle"]["baseline"] > 0
    busy = figures["busy_share"]
    assert busy["value"] > 0 and busy["errors"] == 0, busy  # past the limit: 503s, not failures
