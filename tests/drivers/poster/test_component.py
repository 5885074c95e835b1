"""Poster account simulator ↔ real gateway (poster driver) ↔ reference core, over real sockets.

A café day: orders with accrual and redemption (the customer typed in by phone, ``redeem: max``),
every close resent by the app (the duplicate switch) and once more after the order synced, a
per-line fiscal return, orders removed in the back office after close (``transaction``/``removed``
webhook → full refund of the linked sale), each removal delivered twice, and one app close and one
removal webhook first answered 503 by a storage fault, then redelivered. After the outbox drains
the core has applied exactly the acknowledged keys, once each, and balances add up; a customer
whose only order was removed is back at the welcome bonus exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from gateway.errors import StorageError
from gateway.receipt import Event
from simulators.registers.native.report import Ack
from simulators.registers.poster.account import ClosedOrder, PosterAccount, Switches
from tests.simulators.registers.component import PHONES, System, running_system

SECRET, TOKEN, ACCOUNT, TABLET = "app-secret", "pair-tok", "coffee-demo", 3
POSTER = {"poster": {"pairing_tokens": [TOKEN], "application_secret": SECRET}}
MENU = [(12, Decimal("190")), (40, Decimal("85.5")), (7, Decimal("120")), (150, Decimal("0.2"))]


def sale_key(order_id: int) -> str:
    """drivers/poster/README.md: ``poster:<account>:<tablet>:order:<order.id>``."""
    return f"poster:{ACCOUNT}:{TABLET}:order:{order_id}"


def removal_key(tx: int) -> str:
    return f"poster:{ACCOUNT}:tx:{tx}:removed"


def return_key(order_id: int, lines: dict[str, int]) -> str:
    """The order plus a hash of the returned products (``p<id>x<thousandths>``, sorted)."""
    what = ",".join(f"{k}x{v}" for k, v in sorted(lines.items()))
    return f"poster:{ACCOUNT}:{TABLET}:return:{order_id}:{hashlib.sha256(what.encode()).hexdigest()[:16]}"


def ack(kind: str, key: str) -> Ack:
    return Ack(kind, key, f"{ACCOUNT}/1/{TABLET}", key, False, 1, {})


class FlakyOutbox:
    """Fails the outbox (StorageError → 503) once for the first key with each ``fail_once`` prefix."""

    def __init__(self, system: System, monkeypatch: pytest.MonkeyPatch) -> None:
        assert system.daemon.outbox is not None
        self.real = system.daemon.outbox.append
        self.fail_once: set[str] = set()
        self.failed: list[str] = []
        monkeypatch.setattr(system.daemon.outbox, "append", self.append)

    async def append(self, event: Event) -> bool:
        hit = next((p for p in sorted(self.fail_once) if event.key.startswith(p)), None)
        if hit is not None:
            self.fail_once.discard(hit)
            self.failed.append(event.key)
            raise StorageError("disk full (component test)")
        return await self.real(event)


async def no_wait(_: float) -> None:
    return None


def items(n: int) -> list[tuple[int, Decimal, Decimal]]:
    return [(pid, price, Decimal(1 + n % 2)) for pid, price in MENU[: 1 + n % 3]]


def closed_ok(done: ClosedOrder) -> bool:
    return bool(done.statuses) and all(s == 200 for s in done.statuses)


def plan() -> Iterator[tuple[int, str, int | str]]:
    """(n, phone, redeem) for the day: PHONES[3] shops once (removed later), anonymous now and then."""
    for n in range(12):
        phone = "" if n % 4 == 3 else PHONES[n % 3]
        yield n, phone, "max" if n % 2 == 0 else 0
    yield 12, PHONES[3], "max"


async def test_a_cafe_day_through_poster_reaches_the_core_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_system(tmp_path, POSTER) as system, aiohttp.ClientSession() as session:
        flaky = FlakyOutbox(system, monkeypatch)
        acc = PosterAccount(
            system.gateway_url,
            secret=SECRET,
            token=TOKEN,
            account=ACCOUNT,
            tablet=TABLET,
            switches=Switches(duplicate=True),
            sleep=no_wait,
        )
        acks: list[Ack] = []
        orders: dict[int, ClosedOrder] = {}
        for n, phone, redeem in plan():
            if n == 5:  # the app's queue meets a storage fault once and resends
                flaky.fail_once.add(f"poster:{ACCOUNT}:{TABLET}:order:")
            done = await acc.order(session, items(n), phone=phone, redeem=redeem, transaction_id=58000 + n)
            assert closed_ok(done), (n, done.statuses)
            assert len(done.statuses) == 3  # the close, its duplicate, the resend after the sync
            orders[n] = done
            acks.append(ack("sale", sale_key(done.order_id)))
        assert flaky.failed == [sale_key(orders[5].order_id)]
        redeemed = [o for o in orders.values() if o.bonus > 0]
        assert redeemed and orders[12].bonus > 0, {n: o.bonus for n, o in orders.items()}
        assert all("posgw" in o.extras for n, o in orders.items() if n % 4 != 3)
        assert all(o.bonus == 0 and not o.extras for n, o in orders.items() if n % 4 == 3)

        # a per-line fiscal return of order 1 (2 x product 12 sold, 1 returned), resent once
        status = await acc.return_products(session, orders[1], [(12, Decimal(1))])
        assert status == 200 and await acc.return_products(session, orders[1], [(12, Decimal(1))]) == 200
        acks.append(ack("refund", return_key(orders[1].order_id, {"p12": 1000})))

        # orders removed after close: each removal webhook delivered twice (duplicate switch)
        for n in (4, 12):
            delivery = await acc.send_webhook(session, 58000 + n, "removed")
            assert delivery.statuses == [200, 200], delivery.statuses
            acks.append(ack("refund", removal_key(58000 + n)))
        # a removal first answered 503 (not stored), then redelivered by Poster's retry
        flaky.fail_once.add(removal_key(58008))
        delivery = await acc.send_webhook(session, 58008, "removed")
        assert delivery.statuses[:2] == [503, 200] and delivery.delivered, delivery.statuses
        assert flaky.failed[-1] == removal_key(58008)
        acks.append(ack("refund", removal_key(58008)))
        # a transaction "changed" webhook is acknowledged and changes nothing
        assert (await acc.send_webhook(session, 58002, "changed")).statuses == [200, 200]

        figures = await system.check(acks)
        assert figures["redeemed"] > 0 and figures["accrued"] > 0, figures
        assert figures["operations"] >= len(acks)
        # PHONES[3]'s only order (with redemption) was removed: back at the welcome bonus exactly
        assert (await system.admin.customer(PHONES[3])).balance == system.welcome[PHONES[3]]
