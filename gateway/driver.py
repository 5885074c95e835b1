"""The driver contract: the only things a driver talks to, and the registry of drivers.

A driver parses its vendor's wire format, maps it to :class:`gateway.receipt.Receipt`, and
calls :meth:`DriverContext.calculate` / :meth:`DriverContext.submit`. Deadlines, retries,
storage, offline policy and replay live in the pipeline, never in a driver.

Invariants a driver keeps:
- it acknowledges its till (HTTP 200, cursor advance) only after ``submit`` returned;
- it never catches :class:`gateway.errors.StorageError` to acknowledge anyway;
- HTTP drivers mount routes only under ``/v1/<name>/``; poll and serial drivers run in
  ``run(ctx)`` until ``ctx.stopping`` is set, and are restarted with backoff by the
  supervisor when they raise.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from gateway.receipt import CustomerId, Event, Receipt


@dataclass(frozen=True, slots=True)
class CalcLine:
    line_id: str
    discount: int
    paid: int
    accrues: bool


@dataclass(frozen=True, slots=True)
class CalcResult:
    """What a driver turns into its till's answer.

    ``offline`` means the gateway's offline policy answered (accrual provisional, balance
    pending). ``customer_found`` is False when the customer is unknown: sell without loyalty.
    """

    lines: tuple[CalcLine, ...]
    redeemed_points: int
    points_to_accrue: int
    max_points: int
    payable: int
    offline: bool
    customer_found: bool
    customer_id: str = ""
    display_name: str = ""
    tier: str = ""
    balance: int | None = None  # None when unknown (offline): print "pending", not a stale figure
    hold_id: str = ""
    limited_by: str = ""
    message: str = ""  # text for the slip / cashier screen, in the program's language
    rejection: str = ""  # a §2.5 code when the requested redemption was refused

    @property
    def total_discount(self) -> int:
        return sum(line.discount for line in self.lines)


@dataclass(frozen=True, slots=True)
class CustomerInfo:
    customer_id: str
    display_name: str
    tier: str
    balance: int | None
    offline: bool


class StateStore(Protocol):
    """Persisted per-driver key/value state (cursors, last seen ids, links between ids).
    ``put`` returns once the value is durable; a value put with ``keep_s`` is forgotten that many
    seconds later (None: kept until overwritten). Lookups are indexed: many keys are fine."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, *, keep_s: float | None = None) -> None: ...


class DriverContext(Protocol):
    name: str
    config: Any  # the driver's own typed config object
    log: logging.Logger
    state: StateStore
    stopping: asyncio.Event

    async def calculate(self, receipt: Receipt) -> CalcResult:
        """Answer within the calc budget, online or from the offline policy. Never raises
        for core trouble; raises BadInput for receipts the core would refuse."""
        ...

    async def identify(self, customer: CustomerId) -> CustomerInfo | None: ...

    async def submit(self, event: Event) -> bool:
        """Store durably; return True if new, False if the key was already stored
        (a duplicate). Raises StorageError when nothing was stored."""
        ...

    def count(self, what: str, n: int = 1) -> None:
        """Increment the per-driver counter ``posgw_driver_events_total{driver,what}``."""
        ...


@runtime_checkable
class Driver(Protocol):
    name: str

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        """HTTP routes, paths relative to ``/v1/<name>/``; empty for poll/serial drivers."""
        ...

    async def run(self, ctx: DriverContext) -> None:
        """Long-running work (poll loop, port loop); return at once for HTTP-only drivers."""
        ...


class DriverFactory(Protocol):
    def __call__(self, options: Mapping[str, Any]) -> Driver: ...


# The one place drivers are registered: name -> "module:factory".
REGISTRY: dict[str, str] = {
    "native": "drivers.native.driver:create",
    "evotor": "drivers.evotor.driver:create",
    "modulkassa": "drivers.modulkassa.driver:create",
    "poster": "drivers.poster.driver:create",
}


def load_driver(name: str, options: Mapping[str, Any]) -> Driver:
    """Instantiate a registered driver by name (the CLI passes the config section)."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown driver {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    module_name, _, attr = target.partition(":")
    factory: DriverFactory = getattr(importlib.import_module(module_name), attr)
    return factory(options)
