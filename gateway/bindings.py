"""Customers bound to a register's next receipt, and news of a register for its devices.

A customer identified outside the till (a loyalty QR shown to the gateway's own scanner) is
*bound* to a register: the next receipt of that register that names no customer is calculated
and committed for them, whichever driver brings it (see :class:`Bindings`). A device that shows
the customer what happened (a customer display) *watches* the register (see :class:`Watchers`).

Invariants of a binding:

- it is durable before :meth:`Bindings.bind` returns (``driver_state`` namespace ``_bind`` of the
  outbox file, one row per register holding its recent bindings), so a restart keeps it; the
  in-process cache only mirrors what is stored (this process is the only writer);
- it *covers* the instants from ``bound_at - clock_skew_s`` to ``expires_at``. A calculate applies
  the newest unconsumed binding covering the wall clock now; a sale applies the newest one
  covering the receipt's own close time (``occurred_at``), so a sale committed after the fact
  (a till that only sends closed receipts, polled minutes later) gets the binding that was live
  when it closed, not the one live when it arrived. Bindings are kept ``late_s`` past their
  expiry for such sales;
- a receipt's own customer always wins; a binding only fills an empty customer;
- a sale whose close time it covers *consumes* it once the sale is stored (also a sale that named
  its own customer: that receipt closed, the binding was for it). A consumed binding remembers
  the sale's key, so a resend or a second copy of that sale gets the same customer again and no
  other sale gets it;
- a newer binding replaces an older unconsumed one for what follows its ``bound_at`` (the older
  stays for sales closed before it, out of order);
- a calculate answered for a bound customer is remembered by the pipeline's calc memory (like an
  offline answer), so its sale keeps the customer even when it closes after the binding ended.

Known limit: two sales of one register stored at the same moment may both take one binding
(a register closes one receipt at a time).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from gateway.driver import RegisterNews
from gateway.errors import GatewayError
from gateway.receipt import CustomerId, Event, EventKind, IdKind, Receipt

log = logging.getLogger("posgw.bindings")

BIND_STATE = "_bind"  # the driver_state namespace of bindings (no driver has this name)
KEEP_PER_REGISTER = 8  # bindings kept per register (the newest), consumed or not
LATE_S = 86_400.0  # how long past expiry a binding is kept for sales committed after the fact
CLOCK_SKEW_S = 5.0  # a till's clock may be this much behind the gateway's
MAX_CACHED = 4096  # registers whose (empty) binding list is cached; beyond, empty ones are dropped


class StateRows(Protocol):
    """The part of :class:`gateway.outbox.Outbox` bindings are stored in."""

    async def put_state(self, driver: str, key: str, value: str, *, keep_s: float | None = None) -> None: ...

    async def get_state(self, driver: str, key: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Binding:
    register_id: str
    customer: CustomerId
    bound_at: datetime
    expires_at: datetime
    source: str = ""  # who bound it (a driver name), for the log
    consumed_by: str = ""  # the key of the sale that consumed it ("" while live)

    def covers(self, at: datetime, skew_s: float = CLOCK_SKEW_S) -> bool:
        return self.bound_at - timedelta(seconds=skew_s) <= at <= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.customer.kind.value, "value": self.customer.value, "otp": self.customer.otp,
                "bound_at": self.bound_at.isoformat(), "expires_at": self.expires_at.isoformat(),
                "source": self.source, "consumed_by": self.consumed_by}

    @classmethod
    def from_dict(cls, register_id: str, row: dict[str, Any]) -> Binding:
        customer = CustomerId(IdKind(row["kind"]), str(row["value"]), str(row.get("otp", "")))
        return cls(register_id, customer, datetime.fromisoformat(row["bound_at"]),
                   datetime.fromisoformat(row["expires_at"]), str(row.get("source", "")),
                   str(row.get("consumed_by", "")))


def fill(receipt: Receipt, binding: Binding | None) -> Receipt:
    """``receipt`` for ``binding``'s customer when it names none (else unchanged)."""
    if binding is None or receipt.customer is not None:
        return receipt
    return replace(receipt, customer=binding.customer)


class Bindings:
    """The bindings of every register (see the module docstring)."""

    def __init__(self, store: StateRows, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 clock_skew_s: float = CLOCK_SKEW_S, late_s: float = LATE_S) -> None:
        self.store = store
        self.clock = clock
        self.clock_skew_s = clock_skew_s
        self.late_s = late_s
        self._cache: dict[str, list[Binding]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, register_id: str) -> asyncio.Lock:
        lock = self._locks.get(register_id)
        if lock is None:
            lock = self._locks[register_id] = asyncio.Lock()
        return lock

    async def bind(self, register_id: str, customer: CustomerId, *, keep_s: float,
                   source: str = "") -> Binding:
        """Bind ``customer`` to ``register_id``'s next receipt for ``keep_s`` seconds; returns once
        durable (StorageError when the write failed: then nothing is bound)."""
        if keep_s <= 0:
            raise ValueError(f"keep_s must be positive, not {keep_s}")
        now = self.clock()
        binding = Binding(register_id, customer, now, now + timedelta(seconds=keep_s), source)
        async with self._lock(register_id):
            kept = [b for b in await self._load(register_id) if b.consumed_by or b.customer != customer
                    or b.expires_at < now]  # a rescan of the same live customer replaces it
            await self._save(register_id, [*kept, binding])
        log.info("customer bound to register", extra={"register": register_id, "kind": customer.kind.value,
                                                      "source": source, "keep_s": keep_s})
        return binding

    async def live(self, register_id: str, at: datetime | None = None) -> Binding | None:
        """The binding a receipt closing ``at`` (default: now) on ``register_id`` would get."""
        return self._pick(await self._load(register_id), at or self.clock(), "")

    async def for_calc(self, receipt: Receipt) -> Receipt:
        """``receipt`` with its register's live binding applied when it names no customer."""
        if receipt.customer is not None:
            return receipt
        return fill(receipt, await self.live(receipt.register_id))

    async def for_sale(self, event: Event) -> Binding | None:
        """The binding ``event`` (a sale) consumes: the one it already consumed (a resend),
        else the newest unconsumed binding covering its close time; None for other events."""
        if event.kind != EventKind.SALE or event.receipt is None:
            return None
        receipt = event.receipt
        return self._pick(await self._load(receipt.register_id), receipt.occurred_at, event.key)

    async def consume(self, binding: Binding, key: str) -> None:
        """Mark ``binding`` consumed by the sale ``key`` (stored: a failed write is logged, the
        binding then stays live until it expires)."""
        if binding.consumed_by == key:
            return
        async with self._lock(binding.register_id):
            rows = await self._load(binding.register_id)
            updated = [replace(b, consumed_by=key) if b == binding else b for b in rows]
            try:
                await self._save(binding.register_id, updated)
            except GatewayError as exc:
                log.error("binding not marked consumed", extra={"register": binding.register_id,
                                                                "error": str(exc)})

    # ------------------------------------------------------------ storage

    def _pick(self, rows: list[Binding], at: datetime, key: str) -> Binding | None:
        if not rows:  # a register without a scanner: every sale
            return None
        if key:
            for b in rows:
                if b.consumed_by == key:
                    return b
        live = [b for b in rows if not b.consumed_by and b.covers(at, self.clock_skew_s)]
        # the newest binding bound before ``at`` (within the skew) wins
        return max(live, key=lambda b: b.bound_at, default=None)

    async def _load(self, register_id: str) -> list[Binding]:
        cached = self._cache.get(register_id)
        if cached is not None:
            return cached
        raw = await self.store.get_state(BIND_STATE, register_id)
        rows: list[Binding] = []
        if raw:
            try:
                rows = [Binding.from_dict(register_id, r) for r in json.loads(raw)]
            except (ValueError, KeyError, TypeError) as exc:
                log.error("stored bindings unreadable, ignored", extra={"register": register_id,
                                                                       "error": str(exc)})
        if len(self._cache) >= MAX_CACHED:
            for name in [n for n, r in self._cache.items() if not r]:
                del self._cache[name]
        self._cache[register_id] = rows
        return rows

    async def _save(self, register_id: str, rows: list[Binding]) -> None:
        now = self.clock()
        late = timedelta(seconds=self.late_s)
        rows = sorted((b for b in rows if b.expires_at + late > now), key=lambda b: b.bound_at)
        rows = rows[-KEEP_PER_REGISTER:]
        keep_s = max([(b.expires_at + late - now).total_seconds() for b in rows], default=1.0)
        await self.store.put_state(BIND_STATE, register_id, json.dumps([b.to_dict() for b in rows]),
                                   keep_s=max(keep_s, 1.0))
        self._cache[register_id] = rows  # only once durable


Listener = Callable[[RegisterNews], None]


class Watchers:
    """Listeners of registers: ``watch`` returns the function that stops listening. A listener
    is called on the event loop, must not block, and what it raises is logged, never passed on
    (a display's trouble never reaches a till's answer)."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def watch(self, register_id: str, listener: Listener) -> Callable[[], None]:
        self._listeners.setdefault(register_id, []).append(listener)

        def stop() -> None:
            listeners = self._listeners.get(register_id, [])
            if listener in listeners:
                listeners.remove(listener)
            if not listeners:
                self._listeners.pop(register_id, None)

        return stop

    def tell(self, news: RegisterNews) -> None:
        for listener in list(self._listeners.get(news.register_id, ())):
            try:
                listener(news)
            except Exception:
                log.exception("register listener failed", extra={"register": news.register_id})
