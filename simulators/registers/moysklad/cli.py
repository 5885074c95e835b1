"""``posgw sim moysklad``: MoySklad's cloud plays a shop's day against the gateway's Loyalty API.

Registration with a code, earning (recalc repeated while items change), spending with a code
(a split position), a gift certificate, partial and full returns, resends, a wrong token, empty
document ids. Exit status: 0 when everything sent was applied (and nothing of this run is in the
operator queue), 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time

import aiohttp

from simulators.registers.moysklad.cloud import Cloud
from simulators.registers.moysklad.day import Day, Report
from simulators.registers.queue import operator_queue, queue_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--token",
        default=os.environ.get("POSGW_MOYSKLAD_TOKEN", ""),
        help="the token registered with MoySklad (Lognex-Discount-API-Auth-Token; "
        "default $POSGW_MOYSKLAD_TOKEN)",
    )
    parser.add_argument("--store-id", default="6b1c0f2e-0b6a-11ef-0a80-0d6e00112233", help="retail store id")
    parser.add_argument("--phone", default="", help="the new customer's phone (default: a random +7 number)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible ids)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="MoySklad's wait per request")
    parser.add_argument("--no-queue-check", action="store_true", help="do not read the operator queue")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


async def run_day(args: argparse.Namespace) -> Report:
    rng = random.Random(args.seed)
    phone = args.phone or f"+79{rng.randrange(10**9):09d}"
    started = time.time()
    async with aiohttp.ClientSession() as session:
        cloud = Cloud(
            session,
            f"{args.gateway.rstrip('/')}/v1/moysklad",
            args.token,
            args.store_id,
            timeout_s=args.timeout_s,
            rng=rng,
        )
        report = await Day(cloud, phone).run()
    if not args.no_queue_check:
        rows, problem = await operator_queue(
            args.gateway, since=started - 1.0, admin_key=os.environ.get("POSGW_ADMIN_KEY", "")
        )
        ours = [r for r in rows if str(r.get("key", "")).startswith("moysklad:")]
        report.queued = -1 if problem else len(ours)
        report.problems += queue_lines(ours)
        if problem:
            print(f"operator queue not checked: {problem}", file=sys.stderr)
    return report


def run(args: argparse.Namespace) -> int:
    if not args.token:
        print("posgw sim moysklad: need --token (or $POSGW_MOYSKLAD_TOKEN)", file=sys.stderr)
        return 2
    report = asyncio.run(run_day(args))
    if args.json:
        print(
            json.dumps(
                {
                    "sent": report.sent,
                    "applied": report.applied,
                    "queued": report.queued,
                    "balances": report.balances,
                    "problems": report.problems,
                },
                ensure_ascii=False,
            )
        )
    else:
        print(
            f"moysklad day: {report.sent} requests, {report.applied} documents applied, "
            f"operator queue {report.queued if report.queued >= 0 else 'not checked'}"
        )
        for step, balance in report.balances:
            print(f"  balance {step}: {'not shown' if balance is None else balance}")
        for problem in report.problems:
            print(f"  PROBLEM: {problem}")
    return 1 if report.problems else 0
