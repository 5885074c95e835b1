"""The sender: delivers the outbox's pending events to the core over one ``StreamEvents`` stream.

The stream is opened through :class:`gateway.core_client.CoreClient` (:meth:`open_events`): the
same channel, circuit breaker, metrics and gRPC status table as the calc path's unary calls, so a
core the sender finds failing takes the tills offline too, and the other way round.

Events travel in batches: one ``StreamEventsRequest`` message carries up to ``message_events`` events
(what one outbox read gives, split), and the core answers it with one ``StreamEventsResponse`` holding one
ack per event, in order (proto contract). An StreamEventsResponse that does not match the oldest
unanswered StreamEventsRequest event for event fails the stream. Per-event gRPC messages cost about a
third of the gateway's CPU under load; a batch pays that once.

Send what is stored: the outbox keeps each event's envelope as the bytes the core receives
(:func:`gateway.convert.envelope_body`, built once at append). The sender frames them, with the
row's key, register and sequence number in front, into one serialized ``StreamEventsRequest``
(:func:`gateway.convert.frame_envelope`, :func:`~gateway.convert.frame_batch`: byte for byte what
the protobuf runtime would write) and writes those bytes to the stream as they are; no event is
decoded or encoded again on the way out. An ack is stored as the core's ``EventAck`` bytes (the
operator queue shows it as JSON when asked).

Delivery guarantee: at-least-once sending, exactly-once application — every resend carries the
event's idempotency key, so the core answers a resend as a replay.

How it keeps its promises:
- **Order per register.** Rows are sent in outbox (append) order, which is per-register seq
  order, on one stream; the core applies a stream's events of one register in the order sent,
  within and across batches (proto contract). When a stream fails — error, end, malformed ack,
  a retriable rejection or no ack within ``ack_timeout_s`` — it is torn down and, after a
  backoff, everything not yet acknowledged is re-read from the outbox and resent in order on a
  new stream. A retriable rejection therefore restarts delivery from that event (the rest of
  its StreamEventsResponse is handled first: other registers' results are marked; the refused register's
  later events come back refused, unapplied, and are simply resent). This relies on the core
  honouring the contract that it does not apply a register's later events on a stream after
  refusing an earlier one of that register retriably. Every failure arrives as a
  :class:`~gateway.errors.GatewayError`: stream errors translated by the core client, a
  retriable rejection as a retriable :class:`~gateway.errors.BusinessRejection`, the outbox's
  :class:`~gateway.errors.StorageError`.
- **Delivered only on an ack with a result.** Rows are marked delivered (batched: one outbox
  transaction for an StreamEventsResponse's marks, or for several when they queue up) only when the core's
  ack carries a commit / refund / cancel result. Marks lost in a crash just cause a replay.
  An ack is for the content sent: a copy merged into the row since it was read is reconciled
  as a later copy (:meth:`gateway.outbox.Outbox.mark_acked`), and a row in flight on a stream
  that failed is sent again with the bytes sent before (the core may have applied them), until
  its ack (a result, or a permanent or deferred rejection; a retriable refusal of the resend
  tells nothing about the first send and keeps them). Known gap: a crash between the core
  applying a row and its ack, followed by a merge before the resend, sends the merged content:
  the core refuses it (RECEIPT_CONFLICT) and it goes to the operator queue (nothing doubled,
  nothing silent).
- **Permanent rejections never block a register.** An ack with ``Rejection.retriable = false``
  moves the row to the operator queue (``posgw queue``) and delivery of that register goes on.
  A refund or cancel of a rejected sale waits for it (next point); retrying the sale from the
  queue wakes it.
- **A refund, cancel or correction that overtakes its sale waits; it never blocks its register.**
  The core answers it with a retriable, *deferred* rejection (SALE_NOT_YET_KNOWN, metadata
  sale_key); the row is set aside (outbox state ``waiting``, out of its register's stream: the
  register's later events keep flowing, so a sale of another register or path that never comes
  cannot hold a till's receipts back) and woken (back to pending, resent with the same key) as
  soon as the sale it names is delivered through this gateway, and otherwise on a backoff of its
  own (``wait_initial_s`` doubling per wait up to ``wait_max_s``). Waking re-reads the outbox
  from its start, so a woken row goes out in id order with whatever else is pending. Once
  ``wait_for_sale_s`` has passed since the row's created_at, it goes to the operator queue
  instead: reason SALE_NEVER_ARRIVED, "sale <key> never arrived"; ``posgw queue retry`` then
  sends it again and it is applied if the sale is there by then (if not, it is set aside and,
  past the bound, back in the queue at the next check).
  Per-register order is kept for everything else; only the waiting row moves behind its
  register's later events, which is harmless for them (a later refund or cancel of the same
  missing sale waits too, and they are woken together and sent in id order).
- **Bounded memory.** At most ``window`` events are in flight, counting those acked whose
  marks are not committed yet (a writer slower than the core holds the sending back instead of
  queueing marks without bound); rows are read from the outbox
  in batches of ``batch`` (no per-row query, never the whole backlog): the window is refilled
  only once a batch's worth of room (or half the window) is free, so a steady stream of acks
  costs one outbox read per batch, not one per ack.
- **Acks are read by one plain ``await call.read()`` loop**; the ack timeout is watched by a
  separate task, so no read is ever left as an orphaned future whose exception nobody retrieves.
- **Backoff** between streams uses tenacity's ``wait_random_exponential`` (full jitter, from
  ``backoff_initial_s`` up to ``backoff_max_s``); it resets after an ack. The failure's
  ``retriable`` alone decides the policy: retriable -> that backoff (a WARNING); anything else
  (a status such as UNAUTHENTICATED or UNIMPLEMENTED, a refusal of the whole stream, a bug in
  the sender) -> an ERROR naming the failure, and the next attempt only after ``backoff_max_s``:
  rows are never abandoned, and a core fixed meanwhile is picked up without a restart.
- **Restart-safe.** All state that matters is in the outbox: after a restart pending rows are
  simply sent again.
- **Tills first.** While ``yield_to()`` says tills are being served (the pipeline's
  :class:`~gateway.pipeline.TillActivity`), the outbox is read ``busy_batch`` rows at a time and
  each batch is followed by a pause as long as it took (``pause``, ``asyncio.sleep`` unless a
  test injects its own): delivery (a backlog after an outage, say) takes about half of the event
  loop at most and in short steps, instead of making the tills wait behind it. A read that found
  fewer rows than it asked for (delivery keeping up with the tills' sales) is followed by at
  least ``busy_gather_s`` (20 ms): the sales of those milliseconds then go in one read, one
  message and one mark, not one each (measured: a third less delivery CPU per sale with 32 tills
  committing). With no till traffic it runs flat out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol

import grpc
from tenacity import AsyncRetrying, RetryCallState, wait_random_exponential

from gateway.convert import frame_batch, frame_envelope
from gateway.core_client import EventStream
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.errors import BusinessRejection, CoreUnavailable, GatewayError, StorageError
from gateway.metrics import Metrics
from gateway.outbox import OutboxRow, OutboxStats

log = logging.getLogger("posgw.sender")

SALES_REMEMBERED_S = 60.0  # a delivered sale wakes the rows waiting for it this long
MESSAGE_EVENTS = 128  # default events per StreamEventsRequest (the bench's baseline uses the same)


class DeliveryOutbox(Protocol):
    """The part of :class:`gateway.outbox.Outbox` the sender reads and marks."""

    async def stats(self) -> OutboxStats: ...

    async def next_batch(self, limit: int, *, after_id: int = 0) -> list[OutboxRow]: ...

    async def wait_pending(self, timeout: float) -> None: ...  # noqa: ASYNC109 - Outbox's signature

    async def mark_acked(self, items: list[tuple[OutboxRow, bytes]]) -> None: ...

    async def mark_rejected(self, row_id: int, reason: str, message: str, *,
                            sent: OutboxRow | None = None) -> None: ...

    async def note_retry(self, row_id: int, error: str) -> None: ...

    async def mark_waiting(self, row_id: int, attempts: int, reason: str, message: str) -> bool: ...

    async def wake(self, row_ids: list[int]) -> int: ...

    async def waiting(self, limit: int = 10_000) -> list[OutboxRow]: ...


class EventStreams(Protocol):
    """Where the sender's streams come from: :class:`gateway.core_client.CoreClient`."""

    def open_events(self) -> EventStream: ...


class _Mark(NamedTuple):  # a tuple: one is made per delivered event
    row: OutboxRow
    state: str  # delivered | rejected | retry | wait
    result: bytes = b""  # delivered: the core's EventAck as received
    reason: str = ""
    message: str = ""


@dataclass
class _Stream:
    """Per-stream bookkeeping: what is in flight, and since when we wait for an ack."""

    inflight: dict[str, OutboxRow] = field(default_factory=dict)  # key -> row, in send order
    sent: deque[list[str]] = field(default_factory=deque)  # keys of each unanswered request message, in order
    waiting_since: float = 0.0


class Sender:
    def __init__(
        self, outbox: DeliveryOutbox, core: EventStreams, *, metrics: Metrics | None = None,
        batch: int = 256, window: int = 4096, ack_timeout_s: float = 10.0, backoff_initial_s: float = 0.05,
        backoff_max_s: float = 5.0, idle_poll_s: float = 1.0, rescan_s: float = 30.0,
        message_events: int = MESSAGE_EVENTS, yield_to: Callable[[], bool] | None = None,
        busy_batch: int = 32, busy_gather_s: float = 0.02,
        pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wait_for_sale_s: float = 86_400.0, wait_initial_s: float = 1.0, wait_max_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._core = core
        self._metrics = metrics
        self._batch = max(1, batch)
        self._window = max(1, window)
        self._per_message = max(1, message_events)
        self._refill = max(1, min(self._batch, self._window // 2))  # room worth an outbox read
        self._ack_timeout_s = ack_timeout_s
        self._idle_poll_s = idle_poll_s
        self._yield_to = yield_to
        self._busy_batch = max(1, busy_batch)
        self._busy_gather_s = max(0.0, busy_gather_s)
        self._pause = pause
        self._rescan_s = rescan_s
        self._backoff_max_s = backoff_max_s
        self._wait = wait_random_exponential(multiplier=backoff_initial_s, max=backoff_max_s)
        self._failures = 0  # consecutive failed streams without an ack in between
        self._acked_unmarked: set[str] = set()  # acked, mark not yet committed: never resend
        # marks finished since the send loop's current outbox read began: that read may predate them
        self._marked_since_read: set[str] = set()
        self._marks: asyncio.Queue[list[_Mark] | None] = asyncio.Queue()  # one list per ack batch
        self._room = asyncio.Event()  # set when acks or committed marks free part of the window
        self._progress = asyncio.Event()
        self._running = False
        self._wait_for_sale_s = wait_for_sale_s
        self._wait_initial_s = wait_initial_s
        self._wait_max_s = max(wait_initial_s, wait_max_s)
        self._clock = clock
        self._sale_delivered = asyncio.Event()  # wakes the waiting loop at once
        # sales delivered lately: key -> when (loop time), oldest first (pruned from the front)
        self._sales_delivered: dict[str, float] = {}
        # waiting rows may exist (unknown at start; False after a look found none and until a row is
        # set aside): a delivered sale wakes the waiting loop only then, not at every ack
        self._any_waiting = True
        self._rewind = False  # rows were woken: the send loop reads again from the start
        # rows sent on a stream that failed before their ack (key -> the row as sent): the core may
        # have applied them, so they are sent again as they were, even if a copy was merged into
        # the stored row meanwhile (its ack then reconciles the merge: Outbox.mark_acked). Bounded:
        # only rows in flight when a stream failed, each dropped at its ack.
        self._unacked: dict[str, OutboxRow] = {}

    # ------------------------------------------------------------ public

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until ``stopping`` is set; pending marks are flushed before returning."""
        if self._running:
            raise RuntimeError("Sender.run is already running")
        self._running = True
        marker = asyncio.create_task(self._marker_loop(), name="sender-marker")
        waiter = asyncio.create_task(self._waiting_loop(stopping), name="sender-waiting")
        try:
            while not stopping.is_set():
                try:
                    await self._stream_once(stopping)
                except GatewayError as exc:  # the core's, the stream's or the outbox's trouble
                    await self._after_failure(exc, stopping)
                except Exception as exc:  # the sender supervises its streams: a bug must not stop delivery
                    log.exception("sender bug", extra={"error": repr(exc)})
                    await self._after_failure(exc, stopping)
        finally:
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            await self._marks.put(None)
            await marker
            self._running = False

    async def drain(self, timeout: float, *, stall_s: float | None = None) -> bool:  # noqa: ASYNC109
        """Deliver what can be delivered within ``timeout`` seconds; True if nothing is pending.
        With ``stall_s`` (the daemon's stop), returns early (False) once nothing was marked for
        ``stall_s`` (a quarter of it while the last stream failed): a down or silent core cannot
        be drained, so waiting out the budget would only make the stop slow."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stop: asyncio.Event | None = None
        task: asyncio.Task[None] | None = None
        if not self._running:
            stop = asyncio.Event()
            task = asyncio.create_task(self.run(stop), name="sender-drain")
        last_progress = loop.time()
        try:
            while True:
                if (await self._outbox.stats()).pending == 0:
                    return True
                now = loop.time()
                left = deadline - now
                if left <= 0:
                    return False
                # Give up early when delivery is not moving (core down, refusing or silent): the rows
                # stay pending and are sent after the restart; waiting out the budget helps nobody.
                limit = None if stall_s is None else (stall_s / 4 if self._failures else stall_s)
                if limit is not None and now - last_progress > limit:
                    log.info("sender drain stalled", extra={"pending_left": True, "failures": self._failures})
                    return False
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, 0.1)):
                        await self._progress.wait()
                        last_progress = loop.time()
        finally:
            if stop is not None and task is not None:
                stop.set()
                await task

    # ------------------------------------------------------------ one stream

    async def _stream_once(self, stopping: asyncio.Event) -> None:
        stream = self._core.open_events()  # CoreUnavailable at once while the breaker is open
        st = _Stream()
        tasks = [
            asyncio.create_task(self._send_loop(stream, st), name="sender-send"),
            asyncio.create_task(self._recv_loop(stream, st), name="sender-recv"),
            asyncio.create_task(self._ack_watchdog(stream, st), name="sender-ack-watchdog"),
            asyncio.create_task(stopping.wait(), name="sender-stopping"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            stream.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._unacked.update(st.inflight)  # the core may have applied them: resend them as sent
        for t in done:
            if t.cancelled():
                continue
            exc = t.exception()
            if exc is not None:
                raise exc
        if not stopping.is_set():  # the loops never return: only a stop ends a stream cleanly
            raise CoreUnavailable("StreamEvents: the stream ended")

    async def _send_loop(self, stream: EventStream, st: _Stream) -> None:
        loop = asyncio.get_running_loop()
        cursor = 0
        last_rescan = loop.time()
        rescanned = False  # one rescan per wait: rows whose marks are in flight must not spin us
        while True:
            if self._rewind:  # rows were woken behind the cursor
                self._rewind, cursor = False, 0
            room = self._window - self._held(st)
            if room <= 0:  # full: wait for a batch's worth of room, not just one ack
                while self._window - self._held(st) < self._refill and (st.inflight or self._acked_unmarked):
                    self._room.clear()
                    await self._room.wait()
                continue
            self._marked_since_read.clear()
            busy = self._yield_to is not None and self._yield_to()
            began = loop.time()
            asked = min(room, self._busy_batch if busy else self._batch)
            rows = await self._outbox.next_batch(asked, after_id=cursor)
            if not rows:
                # Nothing after the cursor. Rows before it can only be operator retries or rows whose
                # marks failed: rescan from the start when idle, or now and then under steady load.
                due = not st.inflight or loop.time() - last_rescan > self._rescan_s
                if cursor and not rescanned and due:
                    cursor, last_rescan, rescanned = 0, loop.time(), True
                    continue
                await self._outbox.wait_pending(self._idle_poll_s)
                rescanned = False
                continue
            todo: list[OutboxRow] = []
            for row in rows:
                cursor = row.id
                key = row.key
                if key in st.inflight or key in self._acked_unmarked or key in self._marked_since_read:
                    continue
                was = self._unacked.get(key)
                if was is not None and was.payload != row.payload:  # merged since: send what was sent
                    row = replace(row, payload=was.payload, envelope=was.envelope)
                todo.append(row)
            for i in range(0, len(todo), self._per_message):
                part = todo[i:i + self._per_message]
                if not st.inflight:
                    st.waiting_since = loop.time()
                for row in part:
                    st.inflight[row.key] = row
                st.sent.append([row.key for row in part])
                # the stored envelopes as they are, framed (acks name the row: a conflict row's
                # envelope keeps the original idempotency key inside, its event_id is the row's key)
                framed = [frame_envelope(r.key, r.register_id, r.register_seq, r.envelope) for r in part]
                await stream.write(frame_batch(framed))
            if busy:  # tills first: at most about half of the loop's time, in short steps; a read
                # that took all there was waits busy_gather_s for more (fewer, fuller messages)
                took = loop.time() - began
                await self._pause(took if len(rows) >= asked else max(took, self._busy_gather_s))

    def _held(self, st: _Stream) -> int:
        """Events that count against the window: in flight, or acked with their marks not committed."""
        return len(st.inflight) + len(self._acked_unmarked)

    async def _recv_loop(self, stream: EventStream, st: _Stream) -> None:
        loop = asyncio.get_running_loop()
        while True:
            reply = await stream.read()
            self._on_ack_batch(reply, stream, st, loop.time())

    async def _ack_watchdog(self, stream: EventStream, st: _Stream) -> None:
        """Fail the stream when events are in flight and no ack came for ``ack_timeout_s``."""
        loop = asyncio.get_running_loop()
        check = min(max(self._ack_timeout_s / 4, 0.01), 1.0)
        while True:
            await asyncio.sleep(check)
            if st.inflight and loop.time() - st.waiting_since > self._ack_timeout_s:
                raise stream.fault(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   f"no ack within {self._ack_timeout_s:g}s ({len(st.inflight)} in flight)")

    def _on_ack_batch(self, reply: pb.StreamEventsResponse, stream: EventStream, st: _Stream,
                      now: float) -> None:
        """Handle one response (an ack batch): it must answer the oldest unanswered request, ack for event.
        Every ack is handled (marks queued together: one outbox transaction) before a retriable
        rejection in it fails the stream."""
        broken = grpc.StatusCode.INTERNAL  # an answer that breaks the proto contract
        if not st.sent:
            raise stream.fault(broken, f"an ack batch of {len(reply.acks)} with no request unanswered")
        keys = st.sent.popleft()
        acks = reply.acks
        if len(acks) != len(keys):
            raise stream.fault(broken, f"an ack batch does not answer its request: {len(acks)} acks for "
                                       f"{len(keys)} events {keys[:3]}...")
        results: list[str] = []
        for a, k in zip(acks, keys, strict=True):
            which = a.WhichOneof("result")
            if a.event_id != k:
                got = [a.event_id for a in acks[:3]]
                raise stream.fault(broken, f"an ack batch does not answer its request: {len(acks)} acks "
                                           f"{got}... for {len(keys)} events {keys[:3]}...")
            if which is None:
                raise stream.fault(broken, f"ack without a result in an ack batch starting at {keys[0]}")
            results.append(which)
        st.waiting_since = now
        retry: list[pb.Rejection] = []
        refused: set[str] = set()  # registers refused retriably in this StreamEventsResponse
        marks: list[_Mark] = []
        delivered: dict[str, int] = {}  # kind -> acks (counted once per batch)
        answered = False  # an ack other than a retriable rejection: the core is working
        inflight, unacked, unmarked = st.inflight, self._unacked, self._acked_unmarked
        for ack, which in zip(acks, results, strict=True):
            if which == "rejected":
                cause = self._on_rejected(ack.rejected, inflight.pop(ack.event_id), marks, refused)
                answered = answered or not ack.rejected.retriable
                if cause is not None:
                    retry.append(cause)
                continue
            # applied (commit, refund, cancel or correction): the common case, kept short
            answered = True
            row = inflight.pop(ack.event_id)
            key = row.key
            if unacked:
                unacked.pop(key, None)
            unmarked.add(key)
            marks.append(_Mark(row, "delivered", ack.SerializeToString()))
            kind = row.kind
            delivered[kind] = delivered.get(kind, 0) + 1
            if kind == "sale":  # a refund waiting for it may go now
                self._sales_delivered.pop(key, None)  # (a resend: to the end, keeping the order)
                self._sales_delivered[key] = now
        if marks:
            self._marks.put_nowait(marks)
        if delivered:
            if self._any_waiting and "sale" in delivered:
                self._sale_delivered.set()
            if self._metrics is not None:
                for kind, n in delivered.items():
                    self._metrics.child(self._metrics.delivered, kind).inc(n)
        self._room.set()
        if answered:
            self._failures = 0  # the core answers: back to a short backoff
        if retry:
            more = f" (+{len(retry) - 1} more registers)" if len(retry) > 1 else ""
            first = retry[0]
            raise BusinessRejection(first.reason or "UNKNOWN", f"{first.message}{more}", first.metadata,
                                    retriable=True)

    def _on_rejected(self, rej: pb.Rejection, row: OutboxRow, marks: list[_Mark],
                     refused: set[str]) -> pb.Rejection | None:
        """Add the mark of one rejection to ``marks``; returns the rejection when it is a retriable
        rejection that caused its register's refusal (the register's later refusals return None)."""
        # the bytes a failed stream sent are forgotten only when the core looked the event up and
        # did not apply it (permanent or deferred); a retriable refusal (STORAGE_BUSY, a register
        # refused earlier) says nothing about that earlier send: the next resend is still those bytes
        if rej.deferred or not rej.retriable:
            self._unacked.pop(row.key, None)
        if rej.retriable and rej.deferred:  # its sale is not there yet: set aside, not in the way
            self._acked_unmarked.add(row.key)
            sale = rej.metadata.get("sale_key") or row.event.sale_key
            marks.append(_Mark(row, "wait", reason=rej.reason or "SALE_NOT_YET_KNOWN",
                               message=f"waiting for sale {sale}: {rej.message}"))
            return None
        if rej.retriable:
            if row.register_id in refused:  # refused because of an earlier one: not its fault
                return None
            refused.add(row.register_id)
            marks.append(_Mark(row, "retry", message=f"{rej.reason}: {rej.message}"))
            return rej
        self._acked_unmarked.add(row.key)
        reason = rej.reason or "UNKNOWN"
        marks.append(_Mark(row, "rejected", reason=reason, message=rej.message))
        if self._metrics is not None:
            self._metrics.rejected.labels(rej.reason or "UNKNOWN").inc()
        log.error("event rejected", extra={
            "key": row.key, "register": row.register_id, "seq": row.register_seq, "reason": rej.reason,
            "detail": rej.message, "action": "in the operator queue: posgw queue list / retry / resolve",
        })
        return None

    # ------------------------------------------------------------ marks and backoff

    async def _marker_loop(self) -> None:
        stop = False
        while not stop:
            first = await self._marks.get()
            if first is None:
                break
            items = list(first)
            while not self._marks.empty():
                nxt = self._marks.get_nowait()
                if nxt is None:
                    stop = True
                    break
                items += nxt
            try:
                delivered = [(m.row, m.result) for m in items if m.state == "delivered"]
                await self._outbox.mark_acked(delivered)  # for the content sent (a copy may merge meanwhile)
                for m in items:
                    if m.state == "rejected":
                        await self._outbox.mark_rejected(m.row.id, m.reason, m.message, sent=m.row)
                    elif m.state == "retry":
                        await self._outbox.note_retry(m.row.id, m.message)
                    elif m.state == "wait":
                        await self._outbox.mark_waiting(m.row.id, m.row.attempts + 1, m.reason, m.message)
                        self._any_waiting = True  # look at once: its sale may be delivered already
                        self._sale_delivered.set()
            except Exception as exc:  # rows stay pending and are resent: the core replays them
                if isinstance(exc, StorageError):
                    log.warning("delivery marks failed", extra={"rows": len(items), "error": str(exc)})
                else:  # a bug: logged with its traceback, and the loop goes on (a dead marker
                    # would stop delivery for good once the window filled with unmarked acks)
                    log.exception("delivery marks failed unexpectedly", extra={"rows": len(items)})
                self._unacked.update((m.row.key, m.row) for m in items if m.state == "delivered")  # as sent
            finally:
                for m in items:
                    self._acked_unmarked.discard(m.row.key)
                    if m.state != "retry":  # acked (the core applied or refused it): skipping is safe
                        self._marked_since_read.add(m.row.key)
                self._progress.set()
                self._room.set()

    def _wait_delay(self, attempts: int) -> float:
        """How long a row waits after its ``attempts``-th deferral before it is tried again."""
        return float(min(self._wait_initial_s * 2 ** max(0, min(attempts - 1, 30)), self._wait_max_s))

    async def _waiting_loop(self, stopping: asyncio.Event) -> None:
        """Wake waiting rows whose sale was just delivered, and those due on their backoff; send
        those past ``wait_for_sale_s`` to the operator queue (module docstring). Storage trouble is
        retried at the next check; the rows stay where they are. Looks every ``wait_initial_s``
        (at most 1 s) while rows wait; with none waiting (only this sender sets rows aside), it
        sleeps until one is set aside."""
        check = min(self._wait_initial_s, 1.0)
        while not stopping.is_set():
            # none waiting: sleep until a row is set aside (the marker sets the event), no polling
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(check if self._any_waiting else None):
                    await self._sale_delivered.wait()
            self._sale_delivered.clear()
            # kept a minute: a refund deferred in the same ack batch may be marked waiting after this look
            forget = asyncio.get_running_loop().time() - SALES_REMEMBERED_S
            came = self._sales_delivered
            while came:  # oldest first: drop from the front what is older than a minute
                first = next(iter(came))
                if came[first] > forget:
                    break
                del came[first]
            try:
                rows = await self._outbox.waiting(self._batch)
                self._any_waiting = bool(rows)
                now = self._clock()
                due: list[int] = []
                for row in rows:
                    if row.event.sale_key in came:  # its sale was just delivered: now, whatever its age
                        due.append(row.id)
                    elif now - row.created_at > self._wait_for_sale_s:
                        await self._give_up(row)
                    elif now >= row.updated_at + self._wait_delay(row.attempts):
                        due.append(row.id)
                if due and await self._outbox.wake(due):
                    self._rewind = True
                if len(rows) >= self._batch:  # more than one read's worth: look again at once
                    self._sale_delivered.set()
            except StorageError as exc:
                log.warning("waiting rows not checked", extra={"error": str(exc)})

    async def _give_up(self, row: OutboxRow) -> None:
        sale = row.event.sale_key or "?"
        hours = self._wait_for_sale_s / 3600
        message = (f"sale {sale} never arrived: this {row.kind} waited {hours:g} h for it (wait_for_sale_s); "
                   f"once the sale is at the core, posgw queue retry {row.id} applies it")
        await self._outbox.mark_rejected(row.id, "SALE_NEVER_ARRIVED", message)
        if self._metrics is not None:
            self._metrics.rejected.labels("SALE_NEVER_ARRIVED").inc()
        log.error("event rejected", extra={
            "key": row.key, "register": row.register_id, "seq": row.register_seq,
            "reason": "SALE_NEVER_ARRIVED", "detail": message,
            "action": "in the operator queue: posgw queue list / retry / resolve",
        })

    async def _after_failure(self, exc: Exception, stopping: asyncio.Event) -> None:
        """Back off before the next stream; ``exc.retriable`` alone chooses how (module docstring)."""
        self._failures += 1
        if self._metrics is not None:
            self._metrics.delivery_retries.inc()
        fields = {"attempt": self._failures, "error": str(exc) or repr(exc)}
        if isinstance(exc, GatewayError) and exc.retriable:
            state = RetryCallState(AsyncRetrying(), None, (), {})
            state.attempt_number = self._failures
            delay = float(self._wait(state))
            log.warning("delivery stream failed", extra={**fields, "retry_in_s": round(delay, 3)})
        else:
            delay = self._backoff_max_s
            log.error("delivery stream failed, not retriable", extra={
                **fields, "retry_in_s": delay, "action": "check the core's address, credentials and version",
            })
        with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for may swallow a cancel on 3.11
            async with asyncio.timeout(delay):
                await stopping.wait()


