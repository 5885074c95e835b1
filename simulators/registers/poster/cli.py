"""``posgw sim poster``: a café day from a simulated Poster account against a running gateway.

Before the day, the loyalty card the tills use is registered at the loyalty core (``--core``:
``RegisterCustomer`` by card, which finds the customer when the card is known, so a rerun changes
nothing); without ``--core`` the card is not registered and, on a core that does not know it, its
sales end in the gateway's operator queue (``UNKNOWN_CUSTOMER``).

The report counts what the gateway acknowledged and, from its operator queue (``GET /v1/queue``,
``POSGW_ADMIN_KEY``), what of this run the core did not apply (``not_applied``, by reason).
Exit status 0 when every order was acknowledged, every webhook delivered, the card registered (when
asked) and the operator queue, read, holds nothing of the run; 1 otherwise (a queue that could not
be read is no proof that everything was applied).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import grpc

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from simulators.registers.poster.account import PosterAccount, Switches
from simulators.registers.queue import QUEUE_SETTLE_S, operator_queue
from simulators.stack_check import CoreAdmin

MENU = [(12, Decimal("190")), (40, Decimal("85.5")), (7, Decimal("120")), (150, Decimal("0.2"))]
GUEST_NAME = "Гость Poster (симулятор)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--core",
        default=os.environ.get("POSGW_CORE_ADDRESS", ""),
        metavar="HOST:PORT",
        help="the loyalty core's gRPC address, to register the card first (default: $POSGW_CORE_ADDRESS; "
        "empty: not registered, and a core that does not know the card queues its sales)",
    )
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


async def register_cards(core: str, cards: Sequence[str], *, timeout_s: float = 5.0) -> list[str]:
    """Register each card at the core at ``core`` (back-dated a minute: a sale stamped by the
    till's clock must not come before its customer); returns one problem line per card that
    could not be registered (empty: all are known to the core now)."""
    admin = CoreAdmin(core, timeout_s=timeout_s)
    problems = []
    try:
        for card in cards:
            req = pb.RegisterCustomerRequest(card=card, name=GUEST_NAME, channel="cashier")
            req.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
            try:
                await admin.stub.RegisterCustomer(req, timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                problems.append(f"card {card} not registered at {core}: {exc.code().name} {exc.details()}")
    finally:
        await admin.close()
    return problems


def first_transaction(account: PosterAccount) -> int:
    """The back-office transaction id of the day's first order: Poster's ids are unique in an
    account, so every run takes new ones, never the ids of an earlier run (whose removals the
    gateway holds for other sales): the account's clock in ms, as no day closes more than an order
    a millisecond."""
    return int(account.clock() * 1000) % 10**10


async def cafe_day(account: PosterAccount, orders: int, card: str) -> dict[str, object]:
    acked, removed = 0, []
    first = first_transaction(account)
    async with aiohttp.ClientSession() as session:
        for n in range(orders):
            items = [(pid, price, Decimal(1 + n % 2)) for pid, price in MENU[: 1 + n % 3]]
            tx = first + n
            done = await account.order(
                session, items, card=card if n % 2 == 0 else "", redeem=0, transaction_id=tx,
                removed_early=n % 5 == 4,  # with --out-of-order its removal overtakes the close
            )
            acked += all(200 <= s < 300 for s in done.statuses)
            if n % 5 == 4:
                removed.append((await account.send_webhook(session, tx, "removed")).delivered)
    return {"orders": orders, "acknowledged": acked, "removals": len(removed), "delivered": sum(removed)}


def verdict(day: dict[str, Any], rows: Sequence[dict[str, Any]], problem: str,
            registration: Sequence[str] = ()) -> tuple[dict[str, Any], int]:
    """The run's report and exit status: ``day`` (from :func:`cafe_day`) plus what of the run is in
    the operator queue (``rows``: ``not_applied``, by reason, and the rows), why the queue could not
    be read (``problem``) and the cards that could not be registered. Status 1 when an order was
    not acknowledged, a webhook not delivered, a card not registered, anything not applied, or the
    queue unread (then nothing shows that the run was applied)."""
    report = dict(day)
    report["not_applied"] = len(rows)
    report["not_applied_by_reason"] = dict(Counter(str(r.get("reason")) for r in rows))
    report["operator_queue"] = [{k: r.get(k) for k in ("key", "kind", "reason", "last_error")} for r in rows]
    if problem:
        report["operator_queue_unchecked"] = problem
    if registration:
        report["not_registered"] = list(registration)
    whole = report["acknowledged"] == report["orders"] and report["delivered"] == report["removals"]
    return report, 0 if whole and not rows and not problem and not registration else 1


async def _main(args: argparse.Namespace) -> int:
    switches = Switches(args.bad_signature, args.stale_time, args.duplicate, args.out_of_order)

    async def no_wait(_: float) -> None:  # the two-day retry schedule, compressed to nothing
        await asyncio.sleep(0)

    account = PosterAccount(
        args.gateway, secret=args.secret, token=args.token, switches=switches, sleep=no_wait
    )
    registration: list[str] = []
    if args.core and args.card:
        registration = await register_cards(args.core, [args.card])
    elif args.card:
        print(f"posgw sim poster: card {args.card} not registered (no --core): a core that does not know it "
              "queues its sales as UNKNOWN_CUSTOMER", file=sys.stderr)
    started = time.time()
    day: dict[str, Any] = await cafe_day(account, args.orders, args.card)
    # "acknowledged" is what the gateway stored; what the core refused is in its operator queue
    rows, problem = await operator_queue(args.gateway, since=started - 1.0, settle_s=QUEUE_SETTLE_S,
                                         admin_key=os.environ.get("POSGW_ADMIN_KEY", ""))
    report, status = verdict(day, rows, problem, registration)
    print(json.dumps(report, ensure_ascii=False))
    return status


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))
