"""``posgw demo [--json] [--seed N]``: the whole system on 127.0.0.1 for one scripted day.

Starts the reference core (program seed002, SQLite in a temp dir), the fault proxy, the
gateway and simulated tills as real processes, plays :func:`simulators.demo_day.trading_day`
and prints what happened: the story, balances per customer and the figures. With ``--json``
it prints one JSON object (the figures, plus ``story``, ``balances`` and ``problems``) and
nothing else on stdout.

Exit status: 0 when every acknowledged document reached the core exactly once; 1 when
something acknowledged is missing, doubled or in the operator queue; 2 when the stack could not
start; 130 on Ctrl-C (the processes of the stack are stopped and the temp dir removed first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

FIGURE_ORDER = (
    "receipts_acknowledged", "receipts_at_core", "documents_acknowledged", "documents_at_core",
    "duplicates_at_core", "lost", "offline_answers", "calc_count", "calc_p50_ms", "calc_p99_ms",
    "operator_queue", "duplicate_answers", "unacknowledged", "till_errors", "gateway_starts", "elapsed_s",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the story")
    parser.add_argument("--seed", type=int, default=2, help="seed of the background tills (default 2)")


def run(args: argparse.Namespace) -> int:
    from simulators.demo_day import trading_day
    from simulators.stack import StackError

    def say(line: str) -> None:
        if not args.json:
            print(f"  {line}", flush=True)

    if not args.json:
        print("posgw demo: one trading day on 127.0.0.1 (core, fault proxy, gateway, tills)\n", flush=True)
    try:
        result = asyncio.run(trading_day(seed=args.seed, say=say))
    except StackError as exc:
        print(f"posgw demo: the stack did not start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # asyncio.run cancelled the day: the stack's processes were stopped
        print("posgw demo: interrupted (Ctrl-C); the core and gateway it started are stopped",
              file=sys.stderr)
        return 130
    if args.json:
        out: dict[str, Any] = dict(result.figures)
        out |= {"story": result.story, "balances": result.balances, "problems": result.problems}
        print(json.dumps(out, ensure_ascii=False))
    else:
        print("\nbalances:")
        for b in result.balances:
            debt = f", debt {b['debt']}" if b["debt"] else ""
            print(f"  {b['name']:<12} {b['phone']}  tier {b['tier']:<3} {b['balance']:>6} points{debt}")
        print("\nfigures:")
        for name in FIGURE_ORDER:
            if name in result.figures:
                print(f"  {name:<24} {result.figures[name]}")
        print()
        if result.ok:
            print("OK: every acknowledged receipt, refund and cancel is at the core exactly once")
        for problem in result.problems:
            print(f"PROBLEM: {problem}")
    return 0 if result.ok else 1
