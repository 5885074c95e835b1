"""Shared helpers for the outbox / sender tests: event factories and an injectable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.receipt import Event, EventKind, Line, Receipt, RefundLine

T0 = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sale(register: str, n: int, *, amount: int = 10000, driver: str = "native") -> Event:
    r = Receipt(
        register_id=register,
        receipt_number=str(n),
        lines=(Line("1", "sku", "Item", price=amount, qty_milli=1000, amount=amount),),
        occurred_at=T0 + timedelta(seconds=n),
        shift="1",
        driver=driver,
    )
    return Event(EventKind.SALE, r.sale_key(), register, r.occurred_at, receipt=r)


def refund(register: str, n: int, sale_key: str) -> Event:
    return Event(EventKind.REFUND, f"{sale_key}:refund:{n}", register, T0 + timedelta(hours=1, seconds=n),
                 sale_key=sale_key, refund_lines=(RefundLine("1", 1000),))
