"""Smoke test of ``bench/shop_bench.py --quick``: eight tills asking calculate then committing a
sale a second against a real gateway whose core link is cut and restored; it prints its figures,
every sale the tills tried was acknowledged (outages included) and every sale stored was delivered
(nothing pending, waiting or in the operator queue); the check that fails the bench otherwise, as a
table. No timing is asserted."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ["shop_calc_p50_ms", "shop_calc_p99_ms", "shop_commit_p50_ms", "shop_commit_p99_ms",
           "shop_cpu_us_per_sale", "shop_cpu_us_per_sale_intake", "shop_cpu_us_per_event_delivery",
           "shop_rss_mb_max", "shop_sales_unanswered", "shop_sales_undelivered"]


@pytest.mark.e2e
def test_shop_bench_quick_prints_figures() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "shop_bench.py"), "--quick"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = {fig["figure"]: fig for fig in map(json.loads, proc.stdout.splitlines()) if fig}
    assert list(figures) == FIGURES
    unanswered = figures["shop_sales_unanswered"]
    assert unanswered["value"] == 0 and unanswered["baseline"] > 0 and unanswered["met"], unanswered
    undelivered = figures["shop_sales_undelivered"]  # every stored sale reached the core
    assert undelivered["value"] == 0 and undelivered["baseline"] > 0 and undelivered["met"], undelivered
    for name in FIGURES[:-2]:
        assert figures[name]["value"] > 0 and figures[name]["baseline"] > 0, figures[name]


@pytest.mark.parametrize(
    ("figures", "missing", "why"),
    [
        ({"pending": 0, "waiting": 0, "queued": 0, "delivered": 9}, 0, []),
        ({"pending": 0, "waiting": 0, "queued": 0, "delivered": 12}, 0, []),  # a given-up sale stored
        ({"pending": 2, "waiting": 0, "queued": 0, "delivered": 7}, 2, ["2 still pending in the outbox",
                                                                      "7 delivered of 9 stored"]),
        ({"pending": 0, "waiting": 1, "queued": 1, "delivered": 9}, 2, ["1 waiting for their sale",
                                                                      "1 in the operator queue"]),
        ({"pending": -1, "waiting": 0, "queued": 0, "delivered": 9}, 1,
         ["the outbox's pending count could not be read"]),
    ],
)
def test_a_sale_stored_and_not_delivered_fails_the_bench(
    figures: dict[str, int], missing: int, why: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    shop_bench = importlib.import_module("shop_bench")
    assert shop_bench.undelivered(stored=9, **figures) == (missing, why)
