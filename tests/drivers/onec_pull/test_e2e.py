"""A 1C trading day pulled from a fake 1C publication ↔ real gateway process (onec_pull) ↔ reference core
process, with the gateway SIGKILLed right after 1C handed it a batch (mid-batch: some receipts stored,
the cursor not yet moved) and restarted: every receipt, sales and returns, is applied at the core
exactly once, and 1C was told (AckNo) only about batches the gateway had stored."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from drivers.onec_pull.mapping import doc_key
from simulators.core.tables import Operation
from simulators.registers.onec_pull import FakePublication
from simulators.stack import Stack, StackOptions
from tests.drivers.onec_pull.receipts import PASSWORD, USER, receipt


def section(pub: FakePublication) -> str:
    return f"""
[drivers.onec_pull]
enabled = true
wsdl_url = "{pub.wsdl_url}"
user = "{USER}"
password = "{PASSWORD}"
max_count = 40
interval_s = 0.05
operation_timeout_s = 5.0
backoff_max_s = 0.3
"""


def applied(db: Path) -> dict[str, int]:
    engine = create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            keys = (
                conn.execute(select(Operation.key).where(Operation.key.like("onec_pull:%"))).scalars().all()
            )
    finally:
        engine.dispose()
    counts: dict[str, int] = {}
    for key in keys:
        counts[str(key)] = counts.get(str(key), 0) + 1
    return counts


async def until(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not reached in {timeout_s} s: {what}")


@pytest.mark.e2e
async def test_a_day_pulled_through_a_sigkill_reaches_the_core_exactly_once(tmp_path: Path) -> None:
    sales = [
        {**receipt(n, phone=""), "Summ": Decimal(n), "SummDiscounted": Decimal("179.90")}
        for n in range(1, 81)
    ]
    returns = [
        {
            **receipt(1000 + n, op="Return", base=sales[n]["Id"], phone=""),
            "Line": sales[n]["Line"][:1],
            "SummDiscounted": Decimal("89.90"),
        }
        for n in range(0, 80, 10)
    ]
    async with FakePublication(USER, PASSWORD, close_connections=False).serving() as pub:
        pub.publish(*sales[:40])
        async with Stack(tmp_path, StackOptions(extra_toml=section(pub))) as stack:
            await until(lambda: len(pub.sent) >= 1, 30, "the first batch fetched")
            pub.publish(*sales[40:])
            await until(lambda: len(pub.sent) >= 2, 30, "the second batch fetched")
            await (
                stack.gateway.kill()
            )  # within milliseconds of 1C answering 40 receipts: mid-batch, as a rule
            calls_before = len(pub.acks)
            pub.publish(*returns)
            await stack.gateway.start()
            everything = {doc_key(d["Id"]) for d in [*sales, *returns]}
            await until(lambda: not pub.unread(str(max(pub.acks))), 60, "every batch acknowledged")
            assert await stack.wait_drained(30.0) == 0
            counts = applied(stack.core_db)
    assert set(counts) == everything and set(counts.values()) == {1}, {
        k: n for k, n in counts.items() if n != 1
    }
    assert pub.acks[calls_before] <= 2  # the restarted gateway acknowledged no batch it had not stored before
