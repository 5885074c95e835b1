"""Smoke test of ``bench/gateway_bench.py --quick``: it runs every phase against real processes and
prints one JSON line per figure with the documented keys. No timing is asserted (shared machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = [
    "calc_p50_ms", "calc_p99_ms_32_tills", "durable_commits_per_s", "gateway_cpu_us_per_sale",
    "outbox_rows_per_fsync", "durable_commits_per_s_delivery_paused", "gateway_cpu_us_per_sale_intake",
    "backlog_events_per_s", "backlog_events_per_s_vs_batched_stream", "gateway_cpu_us_per_event_delivery",
    "gateway_rss_mb_max",
    "calc_p99_ms_while_backlog_drains", "calc_p99_ms_while_another_process_streams",
    "offline_calc_p99_ms_core_refused",
    "offline_calc_max_ms_core_blackholed",
]
KEYS = {"figure", "value", "baseline", "ratio", "goal", "met"}


@pytest.mark.e2e
def test_gateway_bench_quick_prints_figures() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gateway_bench.py"), "--quick"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [fig["figure"] for fig in lines] == FIGURES
    for fig in lines:
        assert set(fig) == KEYS, fig
        assert isinstance(fig["met"], bool)
        assert isinstance(fig["value"], int | float) and fig["value"] > 0, fig
        assert isinstance(fig["baseline"], int | float) and fig["baseline"] > 0, fig
        assert isinstance(fig["goal"], str) and fig["goal"]
