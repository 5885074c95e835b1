"""The calc path and the door to the commit path: what a driver's context calls.

Owns the per-receipt time budget, the choice between the core and the offline policy, the
re-ask after a refused redemption, the memory of how each receipt was answered (so its sale
event says so), and the :class:`DriverContext` handed to drivers.

Invariants:
- :meth:`Pipeline.calculate` answers within ``calc_budget_s`` whatever the core or the disk
  does: the core attempt runs under an ``asyncio.timeout`` guard that ends ``fallback_margin_s``
  (40 ms) before the budget (the time kept for the offline evaluation, the token, the calc
  memory and the send, on a loop that may be late under load),
  and the core is asked with a gRPC deadline :data:`GRPC_BEFORE_GUARD_S` before the guard (so a
  core that is slow, or a channel still connecting, normally ends with its own
  DEADLINE_EXCEEDED and the guard is the backstop for a late loop). The calc memory write
  (below) is waited for only until :data:`ANSWER_RESERVE_S` before the budget's end; a write
  still queued then (a disk stalled
  by fsyncs) completes in the background and the answer leaves without it. Nothing else after
  the guard does I/O. It raises only :class:`BadInput` (a receipt the core or the rules
  refuse); core trouble never reaches a till;
- a refused redemption (REDEMPTION_CAP_EXCEEDED, INSUFFICIENT_POINTS, REDEMPTION_NOT_PERMITTED,
  OTP_*) is re-asked without redemption in the budget left (else answered offline without
  redemption), and the answer carries ``rejection`` = the reason so the till can tell the
  cashier; once the core refused a redemption, no fallback grants it;
- UNKNOWN_CUSTOMER / CODE_EXPIRED / CUSTOMER_BLOCKED: no loyalty (``customer_found=False``,
  no discount, no accrual); a receipt without a customer is answered locally the same way
  (mode ``no_customer``) without asking the core;
- one route from calc to commit: every answer carries a calc token (:mod:`gateway.calc_token`:
  customer, points, our discount, hold, offline flag, program version; signed with the
  gateway's key) that a driver hands to its till where the till carries data to commit. An
  answer given offline or with a hold is also remembered durably in the outbox file's
  ``driver_state`` (namespace ``_calc``) by register and receipt identity (number, or customer
  and line ids while the receipt has no number yet), for tills that carry nothing, in one group
  commit: the token followed by the keys it is stored under. The newest calc of a receipt's
  number or goods wins: one remembered replaces the older under its keys, and one that is not
  remembered (online, no hold) forgets the older (an abandoned receipt's points, hold or offline
  flag never reach the customer's next receipt of the same goods); a sale that used a calc,
  carried as its token or found remembered (then only when stored: a resend uses nothing),
  forgets it under every key that still holds that calc, its own and the calc's (a token names
  what a calc decided, not the receipt: a key whose calc was stored under other keys is another
  receipt's, and a key written again since it was looked at holds a newer calc; both stay).
  Only an index of its keys lives in process memory (:mod:`gateway.calc_memory`, read from the
  file before the first sale looks, so a sale whose keys hold nothing reads nothing): a SIGKILL
  between calc and commit changes nothing, except in the rare window where the write outlasted
  the budget (logged "calc answered before its memory was durable") and the process dies
  before it commits: a sale that carries no token is then committed as answered online (in a
  live process a sale waits for the write in flight);
- :meth:`Pipeline.submit` returns only after the outbox stored the event. It first verifies the
  event's calc token (a forged or altered one raises BadInput and nothing is stored) or, for a
  sale without one, recalls the remembered calc; what the calc decided is applied where the
  event does not say otherwise: the customer, the points redeemed (``expected_redeemed``), the
  hold, and ``offline=True`` when the offline policy answered (so the core keeps the printed
  redemption if it still can). The token itself is never stored;
- a customer bound to a register (``ctx.bind_customer``: a scanner at the till, see
  :mod:`gateway.bindings`) fills the customer of that register's calculate (wall clock) and sale
  (its close time) when neither the till, nor the calc token, nor the calc memory names one; the
  sale consumes it once stored; devices watching the register are told of each calc and stored
  sale (``ctx.watch_register``), never holding the answer;
- :attr:`Pipeline.activity` counts the drivers' calls in flight (every driver comes through
  :class:`PipelineContext`); the sender yields to them (see :mod:`gateway.sender`).

Metrics: ``posgw_calc_seconds{driver,mode}`` and ``posgw_calc_answers_total{driver,mode}`` with
mode online / offline / no_customer; ``posgw_driver_events_total`` through ``ctx.count``;
``posgw_outbox_events_total`` is counted by the outbox itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

from gateway.bindings import Bindings, Watchers, fill
from gateway.calc_memory import MemoryIndex
from gateway.calc_token import CalcTokens
from gateway.convert import calculation_to_result, customer_ref, receipt_to_draft
from gateway.core_client import CoreCalls
from gateway.driver import (
    COUNTERS,
    CalcClaims,
    CalcResult,
    CustomerDesk,
    CustomerInfo,
    DriverContext,
    RegisterNews,
    StateStore,
)
from gateway.errors import BadInput, BusinessRejection, CoreUnavailable, GatewayError
from gateway.metrics import Metrics
from gateway.offline import OfflinePolicy, plain_result
from gateway.receipt import CustomerId, Event, EventKind, IdKind, Receipt, validate_event

log = logging.getLogger("posgw.pipeline")

REDEMPTION_REASONS = frozenset(
    {
        "REDEMPTION_CAP_EXCEEDED",
        "INSUFFICIENT_POINTS",
        "REDEMPTION_NOT_PERMITTED",
        "OTP_REQUIRED",
        "OTP_INVALID",
    }
)
NO_CUSTOMER_REASONS = frozenset({"UNKNOWN_CUSTOMER", "CODE_EXPIRED"})
REJECTION_TEXT = {
    "INSUFFICIENT_POINTS": "Списание отклонено: недостаточно баллов",
    "REDEMPTION_CAP_EXCEEDED": "Списание отклонено: можно списать не более {max_points} баллов",
    "REDEMPTION_NOT_PERMITTED": "Списание недоступно при этом способе идентификации: нужен код из приложения",
    "OTP_REQUIRED": "Для списания баллов нужен код из SMS",
    "OTP_INVALID": "Неверный код из SMS: баллы не списаны",
    "UNKNOWN_CUSTOMER": "Покупатель не найден: продажа без бонусов",
    "CODE_EXPIRED": "Код из приложения устарел или уже использован: продажа без бонусов",
    "CUSTOMER_BLOCKED": "Карта покупателя заблокирована: продажа без бонусов",
}
MIN_CORE_TIMEOUT_S = 0.005
# The gRPC deadline ends this long before the calc guard: the call's own DEADLINE_EXCEEDED is
# the normal way out, the guard's cancellation the backstop for a loop that was late.
GRPC_BEFORE_GUARD_S = 0.005
# The calc memory write is waited for until this long before the budget ends: what follows (the
# metrics, the driver's serialisation and send) must fit in it.
ANSWER_RESERVE_S = 0.01
_MEMORY_WRITES: set[asyncio.Future[None]] = set()  # calc memory writes in flight
CALC_MEMORY = "_calc"  # the driver_state namespace of remembered calcs (no driver has this name)
CALC_KEEP_S = 2 * 86_400.0  # a till commits within a shift; a resend after two days has its own data
_KIND_TEXT = {kind: kind.value for kind in IdKind}  # what f"{kind}" writes, without Enum.__format__


class EventStore(Protocol):
    """The part of :class:`gateway.outbox.Outbox` the pipeline uses."""

    async def append(self, event: Event) -> bool: ...

    async def put_state(self, driver: str, key: str, value: str, *, keep_s: float | None = None) -> None: ...

    async def get_state(self, driver: str, key: str) -> str | None: ...

    async def state_keys(self, driver: str, limit: int) -> Sequence[tuple[str, float | None]]: ...


def _memory_keys(receipt: Receipt) -> tuple[str, ...]:
    """Where a calc of ``receipt`` is remembered: by number, and by customer and line ids (a calc
    answered before the receipt had a number; the sale then matches on the same goods)."""
    c = receipt.customer
    customer = "" if c is None else f"{_KIND_TEXT.get(c.kind, c.kind)}:{c.value}"
    shape = "\x1f".join((customer, *(line.line_id for line in receipt.lines)))
    digest = hashlib.sha256(shape.encode()).hexdigest()[:32]
    by_goods = f"{receipt.register_id}\x1f\x1f{digest}"
    if not receipt.receipt_number:
        return (by_goods,)
    return (f"{receipt.register_id}\x1f{receipt.receipt_number}", by_goods)


def apply_claims(event: Event, claims: CalcClaims) -> Event:
    """``event`` with what its calc decided, where the event does not say otherwise: the event's
    own customer, points and hold win. When the event names another customer than the calc did,
    the calc's hold and points (the other customer's) are not applied; the offline flag is."""
    if event.kind == EventKind.CANCEL:
        return replace(event, hold_id=event.hold_id or claims.hold_id, calc_token="")
    if event.kind != EventKind.SALE or event.receipt is None:
        return replace(event, calc_token="")
    receipt = event.receipt
    offline = event.offline or claims.offline
    if receipt.customer is not None and claims.customer is not None and receipt.customer != claims.customer:
        log.warning("sale names another customer than its calc", extra={"key": event.key,
                    "action": "the calc's hold and points are not applied"})
        return replace(event, offline=offline, calc_token="")
    if receipt.customer is None and claims.customer is not None:
        receipt = replace(receipt, customer=claims.customer)
    if claims.redeemed and not receipt.redeem_points:
        receipt = replace(receipt, redeem_points=claims.redeemed)
    expected = claims.redeemed if event.expected_redeemed is None else event.expected_redeemed
    return replace(event, receipt=receipt, offline=offline, expected_redeemed=expected,
                   hold_id=event.hold_id or claims.hold_id, calc_token="")


@dataclass(slots=True)
class _Attempt:
    """What one calculate has learnt so far (read by the guard when the budget runs out)."""

    receipt: Receipt
    rejection: str = ""
    mode: str = "online"


class TillActivity:
    """Till requests in flight, and when the last one ended: :meth:`busy` while any is in flight
    or one ended less than ``quiet_s`` ago (a till's next request follows its answer closely).
    ``with activity.serving():`` counts one request (a plain context manager: every driver call
    goes through it, a generator-based one costs several times more)."""

    def __init__(self, quiet_s: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet_s = quiet_s
        self._clock = clock
        self.in_flight = 0
        self._last_end = float("-inf")

    def serving(self) -> TillActivity:
        return self

    def __enter__(self) -> None:
        self.in_flight += 1

    def __exit__(self, *exc: object) -> None:
        self.in_flight -= 1
        self._last_end = self._clock()

    def busy(self) -> bool:
        return self.in_flight > 0 or self._clock() - self._last_end < self.quiet_s


class Recalled(NamedTuple):
    """A sale's remembered calc: the memory key it was found under, which write of that key (see
    :meth:`gateway.calc_memory.MemoryIndex.lookup`), the sale's memory keys, the keys the calc was
    stored under (none for a memory stored before 2026-12: the token alone), the token as stored,
    and what the calc decided."""

    key: str
    found: int
    keys: tuple[str, ...]
    calc_keys: tuple[str, ...]
    token: str
    claims: CalcClaims


class Pipeline:
    def __init__(
        self,
        core: CoreCalls,
        offline: OfflinePolicy,
        outbox: EventStore,
        *,
        metrics: Metrics,
        calc_budget_s: float = 0.3,
        hold_ttl_s: int = 0,
        fallback_margin_s: float = 0.04,
        tokens: CalcTokens | None = None,
    ) -> None:
        if calc_budget_s <= 0:
            raise ValueError("calc_budget_s must be positive")
        self.core = core
        self.offline = offline
        self.outbox = outbox
        self.metrics = metrics
        self.calc_budget_s = calc_budget_s
        self.hold_ttl_s = hold_ttl_s
        self.fallback_margin_s = fallback_margin_s
        self.tokens = tokens or CalcTokens(secrets.token_bytes(32))
        self.activity = TillActivity()
        self._writing: dict[str, asyncio.Future[None]] = {}  # memory key -> its write in flight
        self._memory_loading: asyncio.Future[None] | None = None
        self._memory = MemoryIndex(functools.partial(outbox.state_keys, CALC_MEMORY), keep_s=CALC_KEEP_S)
        self.bindings = Bindings(outbox)  # customers bound to a register's next receipt (a scanner)
        self.watchers = Watchers()  # devices watching a register (a customer display)

    # ------------------------------------------------------------ calculate

    async def calculate(self, receipt: Receipt, *, driver: str) -> CalcResult:
        started = time.perf_counter()
        receipt.validate()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.calc_budget_s
        asked_for = receipt.customer
        receipt = await self._bound(receipt, deadline)
        attempt = _Attempt(receipt)
        try:  # the core gets the budget minus what the answer needs after giving up on it
            async with asyncio.timeout_at(deadline - self.fallback_margin_s):
                result = await self._calculate(attempt, deadline)
        except TimeoutError:
            log.warning("calc budget spent, answering offline",
                        extra={"driver": driver, "register": receipt.register_id})
            result = self._offline(attempt)
        bound = asked_for is None and receipt.customer is not None and result.customer_found
        result = await self._tokened(attempt.receipt, result, deadline, remember=bound)
        elapsed = time.perf_counter() - started
        self.metrics.child(self.metrics.calc_seconds, driver, attempt.mode).observe(elapsed)
        self.metrics.child(self.metrics.calc_answers, driver, attempt.mode).inc()
        self.watchers.tell(RegisterNews("calc", receipt.register_id, attempt.receipt.customer, result))
        return result

    async def _bound(self, receipt: Receipt, deadline: float) -> Receipt:
        """``receipt`` for its register's bound customer when it names none (see
        :mod:`gateway.bindings`); bindings the store cannot read within a quarter of the budget
        (a stalled disk; once read they are cached) are not applied to this calculate."""
        if receipt.customer is not None:
            return receipt
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(min(deadline - self.fallback_margin_s,
                                              loop.time() + self.calc_budget_s / 4)):
                return await self.bindings.for_calc(receipt)
        except (TimeoutError, GatewayError) as exc:
            log.warning("bindings not read in time, calculating without", extra={
                "register": receipt.register_id, "error": str(exc) or "timeout"})
            return receipt

    def _core_timeout(self, deadline: float) -> float:
        """The gRPC deadline (seconds) of a core call: it ends before the guard does."""
        left = deadline - asyncio.get_running_loop().time() - self.fallback_margin_s - GRPC_BEFORE_GUARD_S
        if left < MIN_CORE_TIMEOUT_S:
            raise CoreUnavailable("no time left in the calc budget to ask the core")
        return left

    async def _calculate(self, attempt: _Attempt, deadline: float) -> CalcResult:
        receipt = attempt.receipt
        if receipt.customer is None:
            attempt.mode = "no_customer"
            asked = receipt.redeem_points > 0 or receipt.redeem_max
            return plain_result(receipt, offline=False, rejection="REDEMPTION_NOT_PERMITTED" if asked else "")
        try:
            calc = await self.core.calculate(
                receipt_to_draft(receipt), timeout=self._core_timeout(deadline), hold_ttl_s=self.hold_ttl_s
            )
        except CoreUnavailable as exc:
            log.info("core unavailable, answering offline",
                     extra={"register": receipt.register_id, "error": str(exc)})
            return self._offline(attempt)
        except BusinessRejection as exc:
            return await self._rejected(attempt, exc, deadline)
        return calculation_to_result(calc, offline=False)

    async def _rejected(self, attempt: _Attempt, exc: BusinessRejection, deadline: float) -> CalcResult:
        receipt = attempt.receipt
        reason = exc.reason
        if reason == "INVALID_RECEIPT":
            raise BadInput(str(exc), exc.metadata.get("field", ""))
        asked = receipt.redeem_points > 0 or receipt.redeem_max
        if reason not in REDEMPTION_REASONS or not asked or attempt.rejection:
            attempt.mode = "no_customer"
            if reason not in NO_CUSTOMER_REASONS and reason != "CUSTOMER_BLOCKED":
                log.warning("core refused a calculate",
                            extra={"register": receipt.register_id, "reason": reason, "error": str(exc)})
            text = REJECTION_TEXT.get(reason, f"Бонусы недоступны ({reason})")
            rejection = attempt.rejection or ("" if reason in NO_CUSTOMER_REASONS else reason)
            return plain_result(receipt, offline=False, message=text, rejection=rejection)
        # The redemption was refused: ask again without it, keep the reason for the cashier.
        attempt.receipt = replace(receipt, redeem_points=0, redeem_max=False)
        attempt.rejection = reason
        try:
            calc = await self.core.calculate(
                receipt_to_draft(attempt.receipt),
                timeout=self._core_timeout(deadline),
                hold_ttl_s=self.hold_ttl_s,
            )
        except CoreUnavailable:
            return self._offline(attempt)
        except BusinessRejection as again:
            return await self._rejected(attempt, again, deadline)
        result = calculation_to_result(calc, offline=False)
        note = REJECTION_TEXT[reason].format(max_points=result.max_points)
        return replace(result, rejection=reason, message="; ".join(m for m in (note, result.message) if m))

    def _offline(self, attempt: _Attempt) -> CalcResult:
        attempt.mode = "offline"
        receipt = attempt.receipt
        try:
            result = self.offline.calculate(receipt)
        except BadInput:
            raise
        except Exception:  # the till must get an answer even if the offline policy has a bug
            log.exception("offline policy failed, answering without loyalty",
                          extra={"register": receipt.register_id})
            result = plain_result(
                receipt, offline=True, message="Нет связи с сервером лояльности: продажа без бонусов"
            )
        if attempt.rejection:
            result = replace(result, rejection=attempt.rejection)
        return result

    # ------------------------------------------------------------ calc token and calc memory

    async def _tokened(self, receipt: Receipt, result: CalcResult, deadline: float, *,
                       remember: bool = False) -> CalcResult:
        """``result`` with its calc token and ``receipt``'s customer; offline answers, holds and
        ``remember`` (a customer from a binding: a sale closed after the binding expired keeps it)
        are also remembered, waiting for the write until :data:`ANSWER_RESERVE_S` before
        ``deadline`` (loop time, the budget's end): a write still queued then goes on in the
        background and the answer leaves without it (the budget is the till's promise)."""
        claims = CalcClaims(
            customer=receipt.customer if result.customer_found else None, redeemed=result.redeemed_points,
            discount=result.total_discount, hold_id=result.hold_id, offline=result.offline,
            program_version=self.offline.program_version, register_id=receipt.register_id,
        )
        token = self.tokens.issue(claims)
        memory = self._memory
        if result.offline or result.hold_id or remember:
            keys, value = _memory_keys(receipt), token
        elif memory.loaded and memory.empty():
            keys, value = (), ""  # nothing remembered that this answer could make stale
        else:  # a newer answer that is not remembered replaces an older calc of the same receipt or
            # goods (the till shows this one; the older one's points, hold or offline flag must not
            # reach its sale, nor the customer's next receipt of the same goods)
            if not memory.loaded:  # until the stored keys are read, only those written since start
                self._load_memory_soon()  # are seen (the first calcs after a start do not wait)
            keys, value = tuple(k for k in _memory_keys(receipt) if memory.lookup(k) > 0), ""
        if keys:
            memory.add(keys)  # before the write: the index never misses a stored key
            written = tuple((key, memory.lookup(key)) for key in keys)  # which write of each key
            write = self._track(asyncio.ensure_future(self._remember(receipt, written, value)), keys)
            if not value:  # forgetting: the answer does not wait (a sale in this process waits for
                return replace(result, token=token, customer=receipt.customer)  # it, _recalled)
            left = deadline - ANSWER_RESERVE_S - asyncio.get_running_loop().time()
            done, _ = await asyncio.wait({write}, timeout=max(0.0, left))
            if not done:  # a group commit stalled behind a slow disk: do not make the till wait
                log.warning("calc answered before its memory was durable",
                            extra={"register": receipt.register_id, "action": "the write goes on; until "
                                   "it commits a sale without its token is committed as answered online"})
        return replace(result, token=token, customer=receipt.customer)  # one copy of the answer

    def _track(self, write: asyncio.Future[None], keys: tuple[str, ...]) -> asyncio.Future[None]:
        """Hold the memory write ``write`` of ``keys`` until it is done (the answer or the sale
        that started it may leave first; :meth:`settle_memory` waits for it) and make a sale of
        those keys arriving meanwhile wait for it (:meth:`_recalled`)."""
        _MEMORY_WRITES.add(write)
        write.add_done_callback(_MEMORY_WRITES.discard)
        for key in keys:
            self._writing[key] = write
        write.add_done_callback(functools.partial(self._written, keys))
        return write

    def _written(self, keys: tuple[str, ...], write: asyncio.Future[None]) -> None:
        for key in keys:
            if self._writing.get(key) is write:
                del self._writing[key]

    async def _remember(self, receipt: Receipt, written: tuple[tuple[str, int], ...], token: str) -> None:
        """Write the calc memory under the keys of ``written`` (key, which write of it: see
        :meth:`MemoryIndex.lookup`) in one group commit; never raises. A calc is stored as its
        token followed by the keys it is stored under, one a line (its sale may come with other
        goods and find it by number alone: :meth:`_forget` then knows the goods key too); an empty
        token forgets what the keys held, and they leave the index once that is written (unless
        written again since)."""
        keys = tuple(key for key, _ in written)
        value = "\n".join((token, *keys)) if token else ""
        try:
            await asyncio.gather(*(self.outbox.put_state(CALC_MEMORY, key, value, keep_s=CALC_KEEP_S)
                                   for key in keys))
            if not token:
                for key, found in written:
                    self._memory.discard(key, found)  # forgotten: its sales need not read it
        except GatewayError as exc:  # the answer goes out anyway; only the memory is lost
            if token:
                log.error("calc not remembered", extra={
                    "register": receipt.register_id, "error": str(exc),
                    "action": "a till that carries no token commits it as answered online"})
            else:
                log.error("older calc not forgotten", extra={
                    "register": receipt.register_id, "error": str(exc),
                    "action": "a sale of these goods that carries no token may still take the older calc's "
                              "points, hold or offline flag; check the disk (posgw doctor)"})

    def _load_memory_soon(self) -> None:
        """Read the calc memory's index in the background (once; a failure is the sales' to see)."""
        if self._memory_loading is None or self._memory_loading.done():
            async def load() -> None:
                with contextlib.suppress(GatewayError):
                    await self._memory.ready()
            self._memory_loading = asyncio.ensure_future(load())

    async def _recalled(self, receipt: Receipt) -> Recalled | None:
        """The remembered calc of ``receipt`` and the memory key it was found under (a memory
        write still in flight is waited for first: the answer may have left before it). The keys
        are asked one after the other: the outbox batches the reads of concurrent sales into one
        reader-thread trip anyway, and asking them together (a task per key) cost more CPU than
        the trip it saved (measured: 32 concurrent sales, +25 % CPU per sale)."""
        memory, indexed = self._memory, True
        if not memory.loaded:
            try:
                await memory.ready()
            except GatewayError as exc:  # the index could not be read: ask the file for every key
                log.warning("calc memory index not read", extra={"error": str(exc)})
                indexed = False
        if indexed and memory.empty():  # (a write in flight was added first: not empty)
            return None  # no calc remembered at all (a shop online without holds): nothing to look for
        keys = _memory_keys(receipt)
        writing = {self._writing[k] for k in keys if k in self._writing}
        if writing:
            await asyncio.wait(writing)
        for key in keys:
            found = memory.lookup(key) if indexed else -1
            if not found:
                continue  # nothing stored under it: no reader-thread trip (most sales)
            stored = await self.outbox.get_state(CALC_MEMORY, key)
            if not stored:
                continue
            token, _, companions = stored.partition("\n")  # (a memory stored before 2026-12: the token alone)
            try:
                calc_keys = tuple(k for k in companions.split("\n") if k)
                return Recalled(key, found, keys, calc_keys, token, self.tokens.read(token))
            except BadInput:  # the key file was replaced: the memory cannot be trusted
                log.warning("remembered calc unreadable", extra={"register": receipt.register_id})
                return None
        return None

    async def _forget(self, token: str, held: list[tuple[str, int]], keys: Sequence[str],
                      calc_keys: Sequence[str] | None = None) -> None:
        """Forget the calc ``token`` under every key that holds that very calc: ``held`` (key,
        which write of it), known to hold it, and those of ``keys`` (the sale's) and of
        ``calc_keys`` (the keys the calc was stored under: its goods may differ from the sale's;
        None: unknown yet, read from the first of ``keys`` that holds the token and was stored
        under the sale's keys only) that still hold it. A calc with a number is remembered by
        number and by goods, and the goods key left behind would give its points, hold and
        offline flag to the customer's next receipt of the same goods on that register (one whose
        own calc was not remembered).

        A token names what a calc decided, not which receipt it was for: two receipts of the same
        goods, customer and points have the same token. So a key whose stored calc was stored
        under other keys than this calc's is another receipt's and stays, as does a newer calc
        under a key (another receipt's, written since the key was looked at)."""
        forget = list(held)
        seen = {key for key, _ in held}
        look = list(dict.fromkeys(k for k in (*keys, *(calc_keys or ())) if k not in seen))
        while look:
            key = look.pop(0)
            seen.add(key)
            found = self._memory.lookup(key)
            if not found:
                continue
            stored, _, companions = (await self.outbox.get_state(CALC_MEMORY, key) or "").partition("\n")
            if not stored or not hmac.compare_digest(stored.encode(), token.encode()):
                continue
            theirs = tuple(k for k in companions.split("\n") if k)
            if calc_keys is None:  # not known yet: a calc stored under the sale's keys only is its
                # calc (a resend, or the first key already forgotten, meets the goods key first)
                if theirs and not set(theirs) <= set(keys):
                    continue
                calc_keys = theirs
                look += [k for k in theirs if k not in seen and k not in look]
            elif theirs and calc_keys and set(theirs) != set(calc_keys):
                continue  # the same decision for another receipt: its calc, not this one
            forget.append((key, found))
        # a key written again since it was looked at holds a newer calc (another receipt's,
        # remembered while this sale was being stored): it stays
        forget = [(key, found) for key, found in forget if self._memory.lookup(key) == found]
        await asyncio.gather(*(self.outbox.put_state(CALC_MEMORY, key, "", keep_s=CALC_KEEP_S)
                               for key, _ in forget))
        for key, found in forget:
            self._memory.discard(key, found)

    def _forget_soon(self, token: str, receipt: Receipt) -> None:
        """A sale that carried its calc token: forget that calc where it is remembered (it was
        answered offline, with a hold or for a bound customer), in the background. Left there, it
        would stay in the index until the next calc of those goods; through a long outage such
        calcs would fill the index past its bound, and every sale would read the file again."""
        memory = self._memory
        if memory.loaded and memory.empty():
            return
        keys = _memory_keys(receipt)
        if memory.loaded and not any(memory.lookup(k) for k in keys) and not any(
                k in self._writing for k in keys):
            return  # not remembered (answered online): nothing to read
        writing = {self._writing[k] for k in keys if k in self._writing}

        async def forget() -> None:
            if writing:  # its own memory write may still be on its way
                await asyncio.wait(writing)
            if not memory.loaded:
                try:
                    await memory.ready()
                except GatewayError:
                    return  # the index could not be read: the sales are told (_recalled)
            try:
                await self._forget(token, [], keys)
            except GatewayError as exc:
                log.error("used calc not forgotten", extra={
                    "register": receipt.register_id, "error": str(exc),
                    "action": "its memory stays until the next calc of these goods or two days; a sale of "
                              "these goods that carries no token may take its points, hold or offline flag; "
                              "check the disk (posgw doctor)"})

        self._track(asyncio.ensure_future(forget()), keys)

    async def settle_memory(self) -> None:
        """Until the calc memory writes in flight are done (some outlive the answer or the sale
        that started them): the daemon's stop waits for them, bounded, before it closes the
        outbox, so that none fails on a closed file. Their failures are theirs to log."""
        while _MEMORY_WRITES:
            await asyncio.gather(*_MEMORY_WRITES, return_exceptions=True)

    # ------------------------------------------------------------ submit, identify

    async def submit(self, event: Event) -> bool:
        """Store ``event`` durably (True new, False duplicate); StorageError when not stored,
        BadInput when its calc token is forged or altered. A remembered calc is used once: it is
        forgotten once the sale is stored (another receipt with the same goods is another calc)."""
        validate_event(event)  # one set of bounds for every driver, on the canonical event
        binding = await self.bindings.for_sale(event)  # the customer bound to its register, if any
        recalled = None
        token = event.calc_token
        if token:
            event = apply_claims(event, self.tokens.read(token))
        elif event.kind == EventKind.SALE and event.receipt is not None:
            recalled = await self._recalled(fill(event.receipt, binding))
            if recalled is not None:
                event = apply_claims(event, recalled.claims)
        if binding is not None and event.receipt is not None:  # the till's and the calc's customer win
            event = replace(event, receipt=fill(event.receipt, binding))
        stored = await self.outbox.append(event)
        if recalled is not None and stored:  # (a resend used nothing: what it found by the goods
            # may be another receipt's calc of the same goods, not the one its first send used)
            await self._forget(recalled.token, [(recalled.key, recalled.found)], recalled.keys,
                               recalled.calc_keys)
        elif token and event.kind == EventKind.SALE and event.receipt is not None:  # (a resend too:
            # the first may have stored it and stopped before this)
            self._forget_soon(token, event.receipt)
        if binding is not None:
            await self.bindings.consume(binding, event.key)
        if stored and event.kind == EventKind.SALE and event.receipt is not None:
            self.watchers.tell(RegisterNews("closed", event.receipt.register_id, event.receipt.customer))
        return stored

    async def identify(self, customer: CustomerId, *, driver: str) -> CustomerInfo | None:
        """The customer from the core within the budget, else from the snapshot (offline=True)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.calc_budget_s
        try:
            async with asyncio.timeout_at(deadline - self.fallback_margin_s):
                found = await self.core.identify(customer_ref(customer), timeout=self._core_timeout(deadline))
        except (CoreUnavailable, TimeoutError):
            return self.offline.identify(customer)
        except BusinessRejection as exc:
            if exc.reason == "INVALID_RECEIPT" or "field" in exc.metadata:
                raise BadInput(str(exc), exc.metadata.get("field", "customer")) from None
            log.info("core refused to identify", extra={"driver": driver, "reason": exc.reason})
            return None
        if found is None:
            return None
        return CustomerInfo(found.customer_id, found.display_name, found.tier, found.balance, offline=False)

    def context(self, name: str, state: StateStore, stopping: asyncio.Event) -> DriverContext:
        return PipelineContext(self, name, state, stopping)


class PipelineContext:
    """A driver's view of the pipeline (satisfies :class:`gateway.driver.DriverContext`)."""

    def __init__(self, pipeline: Pipeline, name: str, state: StateStore, stopping: asyncio.Event):
        self.pipeline = pipeline
        self.name = name
        self.log = logging.getLogger(f"posgw.driver.{name}")
        self.state = state
        self.stopping = stopping
        core = pipeline.core
        self.desk: CustomerDesk | None = core if isinstance(core, CustomerDesk) else None
        self._counters: dict[str, Any] = {}  # what -> the labelled counter child

    async def calculate(self, receipt: Receipt) -> CalcResult:
        with self.pipeline.activity.serving():
            return await self.pipeline.calculate(receipt, driver=self.name)

    async def identify(self, customer: CustomerId) -> CustomerInfo | None:
        with self.pipeline.activity.serving():
            return await self.pipeline.identify(customer, driver=self.name)

    async def submit(self, event: Event) -> bool:
        with self.pipeline.activity.serving():
            return await self.pipeline.submit(event)

    def calc_claims(self, token: str) -> CalcClaims:
        return self.pipeline.tokens.read(token)

    def alarm(self, key: str, message: str | None) -> None:
        self.pipeline.metrics.alarm(self.name, key, message)

    async def bind_customer(self, register_id: str, customer: CustomerId, *, keep_s: float) -> None:
        await self.pipeline.bindings.bind(register_id, customer, keep_s=keep_s, source=self.name)

    def watch_register(self, register_id: str,
                       listener: Callable[[RegisterNews], None]) -> Callable[[], None]:
        return self.pipeline.watchers.watch(register_id, listener)

    def count(self, what: str, n: int = 1) -> None:
        child = self._counters.get(what)
        if child is None:
            if what not in COUNTERS:
                raise ValueError(f"unknown driver counter {what!r}: use one of gateway.driver.COUNTERS")
            metrics = self.pipeline.metrics
            child = self._counters[what] = metrics.child(metrics.driver_events, self.name, what)
        child.inc(n)
