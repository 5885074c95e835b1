"""Small fakes implementing the GATEWAY_API.md signatures, for server and driver tests.

``FakeContext`` answers calculate with "no discount" (or a canned result) and submits to a
real :class:`gateway.outbox.Outbox`, so tests can check what was (not) stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from gateway.calc_token import CalcTokens
from gateway.driver import COUNTERS, CalcClaims, CalcLine, CalcResult, CustomerInfo
from gateway.errors import StorageError
from gateway.receipt import CustomerId, Event, Receipt


class MemoryState:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def put(self, key: str, value: str, *, keep_s: float | None = None) -> None:
        self.data[key] = value


class FakeContext:
    def __init__(self, name: str, outbox: Any) -> None:
        self.name = name
        self.tokens = CalcTokens(bytes(32))
        self.log = logging.getLogger(f"posgw.driver.{name}")
        self.state = MemoryState()
        self.stopping = asyncio.Event()
        self.outbox = outbox
        self.counts: Counter[str] = Counter()
        self.calc_delay_s = 0.0
        self.storage_broken = False
        self.receipts: list[Receipt] = []

    async def calculate(self, receipt: Receipt) -> CalcResult:
        self.receipts.append(receipt)
        if self.calc_delay_s:
            await asyncio.sleep(self.calc_delay_s)
        lines = tuple(
            CalcLine(x.line_id, x.amount // 10, x.amount - x.amount // 10, True) for x in receipt.lines
        )
        found = receipt.customer is not None
        return CalcResult(
            lines=lines, redeemed_points=0, points_to_accrue=receipt.total // 100, max_points=0,
            payable=sum(x.paid for x in lines), offline=False, customer_found=found,
            customer_id="cus-1" if found else "", display_name="Anna K." if found else "",
            tier="base" if found else "", balance=100 if found else None,
        )

    async def identify(self, customer: CustomerId) -> CustomerInfo | None:
        if customer.value == "unknown":
            return None
        return CustomerInfo("cus-1", "Anna K.", "base", 100, False)

    async def submit(self, event: Event) -> bool:
        if self.storage_broken:
            raise StorageError("disk full")
        new: bool = await self.outbox.append(event)
        return new

    def calc_claims(self, token: str) -> CalcClaims:
        return self.tokens.read(token)

    def count(self, what: str, n: int = 1) -> None:
        assert what in COUNTERS, f"{what!r} is not in gateway.driver.COUNTERS"
        self.counts[what] += n
