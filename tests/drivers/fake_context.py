"""An in-memory DriverContext for driver tests, plus a real-socket server for a driver's routes.

``FakeContext`` records every submit (by key: a duplicate key returns False), returns
scripted CalcResults, can fail storage (StorageError) or hold a submit open on an
``asyncio.Event`` to prove a driver answers only after ``submit`` returned. Reusable by any
driver's tests and by the shared compliance suite.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.bindings import Watchers
from gateway.calc_token import CalcTokens
from gateway.driver import COUNTERS, CalcClaims, CalcLine, CalcResult, CustomerInfo, RegisterNews
from gateway.errors import GatewayError, StorageError
from gateway.receipt import CustomerId, Event, Receipt

TOKENS = CalcTokens(bytes(range(32)))  # the same key as the compliance gateway's


def token(**claims: Any) -> str:
    """A calc token as the gateway would have issued it (register "", no customer unless given)."""
    base: dict[str, Any] = dict(customer=None, redeemed=0, discount=0, hold_id="", offline=False,
                                program_version="", register_id="")
    return TOKENS.issue(CalcClaims(**(base | claims)))


class MemoryState:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.keep_s: dict[str, float | None] = {}  # key -> the keep_s of its last put

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def put(self, key: str, value: str, *, keep_s: float | None = None) -> None:
        self.data[key] = value
        self.keep_s[key] = keep_s


def calc_result(receipt: Receipt, discounts: dict[str, int] | None = None, **kw: Any) -> CalcResult:
    """A CalcResult for ``receipt`` with the given per-line discounts (kopecks)."""
    discounts = discounts or {}
    lines = tuple(
        CalcLine(ln.line_id, discounts.get(ln.line_id, 0), ln.amount - discounts.get(ln.line_id, 0), True)
        for ln in receipt.lines
    )
    base: dict[str, Any] = dict(
        redeemed_points=0,
        points_to_accrue=0,
        max_points=0,
        payable=sum(c.paid for c in lines),
        offline=False,
        customer_found=True,
        balance=100,
        customer=receipt.customer,
    )
    base.update(kw)
    return CalcResult(lines=lines, **base)


class FakeContext:
    def __init__(self, name: str, outbox: Any = None) -> None:
        self.name = name
        self.tokens = TOKENS
        self.outbox = outbox  # when given (a real Outbox), submit appends to it instead of a dict
        self.log = logging.getLogger(f"test.{name}")
        self.state = MemoryState()
        self.stopping = asyncio.Event()
        self.desk: Any = None  # no core desk: tests that need one set it
        self.stored: dict[str, Event] = {}
        self.submits: list[Event] = []
        self.calcs: list[Receipt] = []
        self.counts: Counter[str] = Counter()
        self.alarms: dict[str, str] = {}  # the raised alarms: key -> message
        self.calc: Callable[[Receipt], CalcResult] = lambda r: calc_result(
            r, token=token(customer=r.customer))
        self.calc_error: GatewayError | None = None
        self.known: dict[str, CustomerInfo] = {}  # identify answers by identifier value
        self.storage_fails = False
        self.gate: asyncio.Event | None = None  # when set, submit waits for it
        self.submit_entered = asyncio.Event()
        self.bound: list[tuple[str, CustomerId, float]] = []  # stored bind_customer calls, in order
        self.watchers = Watchers()  # tell(RegisterNews(...)) plays the pipeline's news of a register

    async def calculate(self, receipt: Receipt) -> CalcResult:
        self.calcs.append(receipt)
        if self.calc_error is not None:
            raise self.calc_error
        return self.calc(receipt)

    async def identify(self, customer: CustomerId) -> CustomerInfo | None:
        return self.known.get(customer.value)

    async def submit(self, event: Event) -> bool:
        self.submits.append(event)
        self.submit_entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.storage_fails:
            raise StorageError("disk full (test)")
        if self.outbox is not None:
            new: bool = await self.outbox.append(event)
            return new
        if event.key in self.stored:
            return False
        self.stored[event.key] = event
        return True

    def calc_claims(self, token: str) -> CalcClaims:
        return self.tokens.read(token)

    def count(self, what: str, n: int = 1) -> None:
        assert what in COUNTERS, f"{what!r} is not in gateway.driver.COUNTERS"
        self.counts[what] += n

    def alarm(self, key: str, message: str | None) -> None:
        if message is None:
            self.alarms.pop(key, None)
        else:
            self.alarms[key] = message

    async def bind_customer(self, register_id: str, customer: CustomerId, *, keep_s: float) -> None:
        if self.storage_fails:
            raise StorageError("disk full (test)")
        self.bound.append((register_id, customer, keep_s))

    def watch_register(self, register_id: str,
                       listener: Callable[[RegisterNews], None]) -> Callable[[], None]:
        return self.watchers.watch(register_id, listener)

    def tell(self, news: RegisterNews) -> None:
        self.watchers.tell(news)


@asynccontextmanager
async def serve(driver: Any, ctx: FakeContext) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The driver's routes mounted under /v1/<name>/ on 127.0.0.1 (a real socket)."""
    sub = web.Application()
    sub.add_routes(driver.routes(ctx))
    app = web.Application()
    app.add_subapp(f"/v1/{driver.name}", sub)
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
