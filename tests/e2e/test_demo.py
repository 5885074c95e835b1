"""``posgw demo --json`` as a user runs it: a real process, one JSON object, exit status 0."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_demo_json_reports_nothing_lost_nor_doubled() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--json", "--seed", "3"],
        capture_output=True, text=True, timeout=150, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    figures = json.loads(proc.stdout)
    print({k: v for k, v in figures.items() if k not in ("story", "balances")})
    for name in ("receipts_acknowledged", "receipts_at_core", "duplicates_at_core", "lost", "offline_answers",
                 "calc_p50_ms", "calc_p99_ms", "operator_queue"):
        assert name in figures, name
    assert figures["lost"] == 0
    assert figures["duplicates_at_core"] == 0
    assert figures["problems"] == []
    assert figures["receipts_acknowledged"] > 20
    assert figures["receipts_at_core"] == figures["receipts_acknowledged"]
    assert figures["offline_answers"] > 0  # the outage in the middle was answered offline
    assert figures["gateway_starts"] == 3  # started, SIGTERM restart, SIGKILL restart
    assert len(figures["balances"]) == 6  # five regulars and the newcomer of the outage
    assert all(isinstance(b["balance"], int) for b in figures["balances"])
