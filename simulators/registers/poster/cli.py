"""``posgw sim poster``: a café day from a simulated Poster account against a running gateway.

Exit status 0 when every order was acknowledged and every webhook delivered, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from decimal import Decimal
from typing import Any

import aiohttp

from simulators.registers.poster.account import PosterAccount, Switches
from simulators.registers.queue import operator_queue

MENU = [(12, Decimal("190")), (40, Decimal("85.5")), (7, Decimal("120")), (150, Decimal("0.2"))]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--secret",
        default=os.environ.get("POSTER_APP_SECRET", ""),
        help="Poster application secret (default: $POSTER_APP_SECRET)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("POSTER_PAIRING_TOKEN", ""),
        help="pairing token of the app (default: $POSTER_PAIRING_TOKEN)",
    )
    parser.add_argument("--orders", type=int, default=10, help="orders in the day")
    parser.add_argument("--card", default="2000012345", help="loyalty card used on every other order")
    for flag in ("bad-signature", "stale-time", "duplicate", "out-of-order"):
        parser.add_argument(f"--{flag}", action="store_true", help=f"misbehave: {flag.replace('-', ' ')}")


async def cafe_day(account: PosterAccount, orders: int, card: str) -> dict[str, object]:
    acked, removed = 0, []
    async with aiohttp.ClientSession() as session:
        for n in range(orders):
            items = [(pid, price, Decimal(1 + n % 2)) for pid, price in MENU[: 1 + n % 3]]
            tx = 58000 + n
            done = await account.order(
                session, items, card=card if n % 2 == 0 else "", redeem=0, transaction_id=tx,
                removed_early=n % 5 == 4,  # with --out-of-order its removal overtakes the close
            )
            acked += all(200 <= s < 300 for s in done.statuses)
            if n % 5 == 4:
                removed.append((await account.send_webhook(session, tx, "removed")).delivered)
    return {"orders": orders, "acknowledged": acked, "removals": len(removed), "delivered": sum(removed)}


async def _main(args: argparse.Namespace) -> int:
    switches = Switches(args.bad_signature, args.stale_time, args.duplicate, args.out_of_order)

    async def no_wait(_: float) -> None:  # the two-day retry schedule, compressed to nothing
        await asyncio.sleep(0)

    account = PosterAccount(
        args.gateway, secret=args.secret, token=args.token, switches=switches, sleep=no_wait
    )
    started = time.time()
    report: dict[str, Any] = await cafe_day(account, args.orders, args.card)
    # "delivered" is what the gateway acknowledged; what the core refused is in its operator queue
    rows, problem = await operator_queue(args.gateway, since=started - 1.0,
                                                admin_key=os.environ.get("POSGW_ADMIN_KEY", ""))
    report["operator_queue"] = [{k: r.get(k) for k in ("key", "kind", "reason", "last_error")} for r in rows]
    if problem:
        report["operator_queue_unchecked"] = problem
    print(json.dumps(report, ensure_ascii=False))
    applied = not rows
    return (
        0 if report["acknowledged"] == report["orders"] and report["delivered"] == report["removals"]
        and applied else 1
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))
