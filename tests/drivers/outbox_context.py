"""A DriverContext whose commits and state go to a real :class:`gateway.outbox.Outbox` file.

For the poll and device compliance suites: ``submit`` is ``Outbox.append`` (durable when it
returns, duplicates stored once by key), ``state`` is an :class:`OutboxStateStore` on the same
file, so "nothing acknowledged before the durable write" is checked against what is really on
disk. Faults: ``fail_from`` (every submit from that number on, 1-based, raises StorageError
before writing), ``heal()`` to stop failing, and ``watch_puts`` to check every state put as it
happens. ``rows()`` reads the file (see :func:`tests.drivers.compliance_harness.read_rows`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from gateway.driver import CalcClaims, CalcResult, CustomerInfo
from gateway.errors import StorageError
from gateway.outbox import Outbox, OutboxStateStore
from gateway.receipt import CustomerId, Event, Receipt
from tests.drivers.compliance_harness import read_rows


class WatchedState:
    """OutboxStateStore that calls ``on_put(key, value)`` after each durable put."""

    def __init__(self, store: OutboxStateStore) -> None:
        self._store = store
        self.on_put: Callable[[str, str], None] = lambda key, value: None

    async def get(self, key: str) -> str | None:
        return await self._store.get(key)

    async def put(self, key: str, value: str, *, keep_s: float | None = None) -> None:
        await self._store.put(key, value, keep_s=keep_s)
        self.on_put(key, value)


class OutboxContext:
    def __init__(self, name: str, outbox: Outbox) -> None:
        self.name = name
        self.outbox = outbox
        self.log = logging.getLogger(f"test.{name}")
        self.state = WatchedState(OutboxStateStore(outbox, name))
        self.stopping = asyncio.Event()
        self.desk: object = None  # no core desk: tests that need one set it
        self.counts: Counter[str] = Counter()
        self.submitted = 0
        self.fail_from: int | None = None
        self.alarms: dict[str, str] = {}  # the raised alarms: key -> message (ctx.alarm)

    @classmethod
    async def open(cls, name: str, tmp_path: Path) -> OutboxContext:
        return cls(name, await Outbox.open(tmp_path / "outbox.db"))

    def fresh(self) -> OutboxContext:
        """A new context on the same outbox: the driver restarted (counters start from zero)."""
        return OutboxContext(self.name, self.outbox)

    def rows(self) -> list[str]:
        """Keys of every stored row, in append order."""
        return [key for key, _ in read_rows(self.outbox.path)]

    async def submit(self, event: Event) -> bool:
        self.submitted += 1
        if self.fail_from is not None and self.submitted >= self.fail_from:
            raise StorageError("disk full (compliance test)")
        return await self.outbox.append(event)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def alarm(self, key: str, message: str | None) -> None:
        if message is None:
            self.alarms.pop(key, None)
        else:
            self.alarms[key] = message

    async def calculate(self, receipt: Receipt) -> CalcResult:
        raise NotImplementedError("poll and device drivers do not calculate in these suites")

    async def identify(self, customer: CustomerId) -> CustomerInfo | None:
        return None

    def calc_claims(self, token: str) -> CalcClaims:
        raise NotImplementedError


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a test helper
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
