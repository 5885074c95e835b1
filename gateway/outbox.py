"""The outbox: durable, deduplicated, ordered storage of events between the till and the core.

Invariants:
- ``append`` returns only after the event's transaction committed with ``synchronous=FULL``
  (WAL fsync): an acknowledged event survives kill -9 and power loss. When the write fails,
  every waiter of that group commit gets :class:`~gateway.errors.StorageError` and nothing of
  the batch is stored (one transaction); ``stats().writable`` stays False until a write succeeds.
- Group commit: concurrent ``append`` calls (and the sender's state changes) go through a
  bounded queue to ONE writer thread, which writes everything waiting (up to ``max_batch``)
  in one transaction, i.e. one fsync, then hands the results to the event loop in one callback
  and goes straight on with the next batch (the loop is never on the writer's critical path).
  A full queue (``queue_size`` ops not yet answered) makes ``append`` wait (backpressure)
  instead of growing memory.
- One row per idempotency key: appending a known key returns False and never adds a second
  event under that key. A known key with other bytes is reconciled (:meth:`Outbox.append`,
  rule in :func:`gateway.receipt.merge_copies`), in one writer transaction with the read of the
  stored row, whichever copy came first:
  * a copy that adds nothing: nothing changes (DEBUG);
  * a copy that adds something, stored row not delivered yet (pending, waiting, rejected): the
    stored payload is replaced by the merge, same key, same register_seq (``outcome="merged"``);
    a rejected row (the operator queue) changes what ``posgw queue retry`` will send: WARNING
    naming the key and what the copy adds, and its last_error (the queue listing) says so first
    (so does the rejection of a row the core refused while a copy merged into it in flight);
    a copy of a *waiting* (or not yet sent) refund or cancel that names another sale (the driver
    learnt the sale's real key meanwhile) replaces the reference the core never knew, and a
    waiting row is woken. A pending row may be on its way to the core (sent, not acked): the
    sender's ack is for the content it sent, so :meth:`Outbox.mark_acked` delivers a row only
    while its payload is still the one sent; a row merged meanwhile is marked delivered with the
    content sent (what the core applied) and the merge is then reconciled as a copy after
    delivery (next case), in the mark's transaction (WARNING). A row sent on a stream that
    failed before its ack is sent again as it was sent (the core may have applied it: the merged
    content under the same key would be a conflict there), so its ack takes the same way;
  * stored row delivered, the copy adds the customer: a correction event
    ``<key>:correction:1`` (:func:`gateway.receipt.correction_event`, the core's AttachCustomer)
    is appended, applied once (``outcome="correction"``; a later copy naming another customer than
    the stored correction attaches is a conflict, below); a copy adding only fiscal data changes
    nothing; one that would spend points (or a hold) after delivery cannot be corrected: it is a
    conflict;
  * a real conflict (other goods, amounts, customer, points, time): the copy is stored as a
    REJECTED row ``<key>:conflict:<n>`` in the operator queue (reason RECEIPT_CONFLICT; its
    payload is the new copy, its last_error names the stored row and summarises both versions),
    WARNING, ``outcome="conflict"``; never silently dropped. Its operator retry sends it under
    the original idempotency key: the core applies it only if the stored version was never
    applied (else RECEIPT_CONFLICT again), so nothing is doubled. Bounded: while
    :data:`MAX_OPEN_CONFLICTS` conflicting copies of the key wait in the operator queue, a new
    one is refused: append raises :class:`ConflictLimit` (a retriable StorageError: nothing is
    stored, the driver answers "not stored", the till keeps the copy and resends it), ERROR and
    the alarm ``conflicts:<key>`` of the receipt's driver (cleared once a copy of the key is
    stored again, after the operator resolved some; not by a resend of a copy already queued); a
    till reusing a key cannot grow the queue without bound, and nothing it was told is stored is
    dropped (a copy merged while its event was in flight and found conflicting at delivery is
    stored past the cap: the till was told "stored" when it merged).
  In every other case the copy is durable when append returns: the driver answers the till with
  its vendor's success (the till did its part; resending would change nothing).
- Per-register sequence numbers are assigned by the writer, gap-free and increasing in append
  order; pending rows are handed out in append (id) order, which is (register, seq) order
  within every register.
- States: pending -> delivered | rejected | waiting; waiting -> pending (the sender wakes it:
  due again, or its sale was delivered) | rejected (waited past ``wait_for_sale_s``); rejected
  -> pending (operator retry) | resolved (operator resolve). Only the operator moves a rejected
  row; nothing is silently dropped. A waiting row (a refund, cancel or correction whose sale
  the core does not know yet) is out of its register's stream: the register's later events go on.
- Store what is sent: ``append`` turns the event into the core's envelope once
  (:func:`gateway.convert.envelope_body`) and stores those bytes beside the JSON payload (both in
  the same row, replaced together by a merge). Delivery reads them as they are
  (:meth:`Outbox.next_batch`: rows carry ``envelope``; ``OutboxRow.event`` is decoded from the
  payload only when something asks for it: the merge rules, the operator queue, a waiting row).
- The event loop never blocks on SQLite: writes run in the writer thread, reads in a reader
  thread, each with its own connection (WAL lets them run side by side).
- At open (:func:`gateway.outbox_db.open_store`): a file or directory the process cannot use
  (permissions, a read-only filesystem, I/O errors, a full disk) stops the start with the path
  and the fix and is never moved; a damaged file has its readable rows salvaged into a new
  outbox (:mod:`gateway.salvage`) before it is moved aside (``<name>.corrupt-<time>``), logged at
  ERROR, shown in ``stats().moved_aside``; the salvage is recorded in the file and shown in
  ``stats().salvage`` (the gateway is degraded) until :meth:`Outbox.ack_salvage`.
- A failing write (a full disk, I/O errors) refuses the waiting events with StorageError;
  the log gets one ERROR when the outbox stops being writable, one when it is writable again,
  and while it stays unwritable a reminder at most every ``REMIND_EVERY_S``, never one per
  refused write (``posgw_outbox_writable`` follows it).

On-disk format (details and the schema code in :mod:`gateway.outbox_db`): one SQLite file,
``PRAGMA user_version = 3``; table ``events`` (id autoincrement = append order, key UNIQUE,
register_id + register_seq UNIQUE, kind, payload = versioned JSON of the event from
:func:`gateway.payload.event_to_json`, envelope = the core's protobuf envelope of the same event
without its header (:func:`gateway.convert.envelope_body`), state, attempts, created_at /
updated_at Unix seconds, last_error, reason, note, result_json / result = the core's answer);
table ``registers`` (register_id, last_seq) keeps sequence numbers monotonic after delivered rows
are pruned (``keep_delivered_s``, default 7 days); table ``driver_state`` holds the drivers'
persisted state (:class:`OutboxStateStore`), written through the same group commit. States: ``pending``,
``delivered``, ``rejected``, ``resolved``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from gateway import outbox_db as db
from gateway import salvage
from gateway.convert import envelope_body, frame_batch
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.errors import StorageError
from gateway.metrics import Metrics
from gateway.payload import event_from_json, event_to_json
from gateway.receipt import CopyVerdict, Event, EventKind, correction_event, merge_copies
from gateway.salvage import SalvageReport

log = logging.getLogger("posgw.outbox")
T = TypeVar("T")
PRUNE_EVERY_S = 3600.0
REMIND_EVERY_S = 60.0  # while the outbox cannot be written: one ERROR reminder at most this often
# conflicting copies of one key waiting in the operator queue (rejected) at most; a further one is
# refused, not stored and not acknowledged (ConflictLimit): the till keeps it and resends it later
MAX_OPEN_CONFLICTS = 100


class ConflictLimit(StorageError):
    """A conflicting copy was NOT stored: its key has :data:`MAX_OPEN_CONFLICTS` conflicting
    copies in the operator queue already. Retriable: the till keeps it and resends it; it is
    stored once the operator resolved (or retried) queued ones. Must not be acknowledged."""


@dataclass(frozen=True)
class OutboxRow:
    """One stored event. ``envelope`` is what the sender sends (the stored bytes, see
    :func:`gateway.convert.envelope_body`); ``event`` is decoded from ``payload`` when first asked
    for (an unreadable payload gives a placeholder event naming the problem)."""

    id: int
    key: str
    register_id: str
    register_seq: int
    kind: str
    payload: bytes  # gateway.payload.event_to_json of the event
    state: db.RowState
    attempts: int
    created_at: float
    last_error: str
    result_json: str  # the core's answer as JSON ("" until delivered)
    reason: str = ""  # rejection reason code (§2.5) when rejected
    note: str = ""  # operator's note when resolved
    updated_at: float = 0.0
    envelope: bytes = b""  # the core's envelope without its header, as stored

    @cached_property
    def event(self) -> Event:
        """The stored event, decoded on demand (a placeholder when the payload cannot be read)."""
        try:
            return event_from_json(self.payload)
        except (ValueError, KeyError, TypeError) as exc:
            kind = self.kind if self.kind in set(EventKind) else EventKind.SALE
            return Event(EventKind(kind), self.key, self.register_id,
                         datetime.fromtimestamp(self.created_at, UTC), extra=(("payload_error", str(exc)),))


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_pending_age_s: float
    rejected: int
    writable: bool
    stuck: bool
    moved_aside: str = ""  # where a corrupt file found at open was moved ("" if none)
    last_storage_error: str = ""
    salvage: tuple[SalvageReport, ...] = ()  # salvages not acknowledged yet: the gateway is degraded
    waiting: int = 0  # refunds/cancels set aside until their sale reaches the core (bounded)


# State changes that are delivery progress (an operator's retry or resolve is not).
_PROGRESS = frozenset({db.Action.DELIVER, db.Action.REJECT})
_NO_VALUES: dict[str, Any] = {}  # shared, never written: the values of an op that has none


@dataclass(eq=False, slots=True)
class _Op:
    # append | note_retry | state | ack_salvage | pragmas, or a db.Action (a state change: values["rows"])
    kind: str
    future: asyncio.Future[Any]
    row_id: int = 0
    new: db.NewEvent | None = None
    values: dict[str, Any] = field(default_factory=lambda: _NO_VALUES)


class Outbox:
    """See the module docstring. Create with :meth:`open`; one instance per file per process."""

    def __init__(
        self, path: Path, engine: Engine, *, metrics: Metrics | None, max_batch: int, queue_size: int,
        stuck_after_s: float, keep_delivered_s: float, clock: Callable[[], float], moved_aside: str,
        last_progress: float = 0.0,
    ) -> None:
        self.path = path
        self._engine = engine
        self._metrics = metrics
        self._max_batch = max_batch
        self._stuck_after_s = stuck_after_s
        self._keep_delivered_s = keep_delivered_s
        self._clock = clock
        self._moved_aside = moved_aside
        self._loop = asyncio.get_running_loop()
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()  # to the writer thread
        self._slots = asyncio.Semaphore(queue_size)  # ops queued or being written, not yet answered
        self._rexec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-reader")
        self._wconn: Connection | None = None  # used only in the writer thread
        self._seqs: dict[str, int] = {}  # registers.last_seq as committed (writer thread only)
        self._reseq: set[str] = set()  # registers whose last_seq _reconcile moved (writer thread only)
        self._rconn: Connection | None = None  # used only in the reader thread
        self._writable = True
        self._last_storage_error = ""
        self._unwritable_since = 0.0  # clock() when writes began to fail (while not writable)
        self._last_reminder = 0.0
        self._failed_since_change = 0  # events refused since the last logged state change / reminder
        self._last_progress = last_progress  # the last delivery or rejection (0: none on record)
        self._last_prune = 0.0
        self._new_rows = asyncio.Event()
        self._refused: set[str] = set()  # keys whose conflicting copies are refused (ConflictLimit)
        self._closed = False
        self.commits = 0  # successful group commits (for tests and the bench)
        self.rows_committed = 0  # new events stored
        self.state_read_trips = 0  # reader-thread trips that answered get_state reads (tests, bench)
        self._state_reads: list[tuple[str, str, asyncio.Future[str | None]]] = []  # queued get_state
        self._state_reader: asyncio.Task[None] | None = None  # answers them (at most one at a time)
        self._writer: asyncio.Future[None] = self._loop.create_future()  # done when the thread ended
        threading.Thread(target=self._writer_main, name="outbox-writer", daemon=True).start()

    @classmethod
    async def open(
        cls, path: Path, *, metrics: Metrics | None = None, max_batch: int = 256, queue_size: int = 1024,
        stuck_after_s: float = 300.0, keep_delivered_s: float = 7 * 86400.0, busy_timeout_ms: int = 5000,
        create: bool = True, recover: bool = True, clock: Callable[[], float] = time.time,
    ) -> Outbox:
        """Open (create) the outbox file. ``recover`` salvages a damaged file and moves it aside
        (the daemon); the CLI passes ``create=False, recover=False`` so it never alters a file it
        cannot read (:class:`~gateway.outbox_db.OutboxDamaged`). A file the process cannot use raises
        :class:`~gateway.outbox_db.OutboxInaccessible` (a ConfigError and a StorageError) either way."""
        loop = asyncio.get_running_loop()

        def opening() -> tuple[Engine, str, float]:
            engine, moved = db.open_store(Path(path), busy_timeout_ms=busy_timeout_ms, create=create,
                                          recover=salvage.salvage if recover else None, now=clock())
            try:
                return engine, moved, db.last_progress(engine)
            except (SQLAlchemyError, sqlite3.Error) as exc:
                engine.dispose()
                raise StorageError(f"cannot read the outbox {path}: {exc}") from exc

        engine, moved, last_progress = await loop.run_in_executor(None, opening)
        return cls(
            Path(path), engine, metrics=metrics, max_batch=max_batch, queue_size=queue_size,
            stuck_after_s=stuck_after_s, keep_delivered_s=keep_delivered_s, clock=clock, moved_aside=moved,
            last_progress=last_progress,
        )

    # ------------------------------------------------------------ writes (group commit)

    async def append(self, event: Event) -> bool:
        """Store ``event`` durably; True if new, False if its key is already stored (a copy:
        reconciled with the stored event, see the module docstring, durably before returning).
        Raises StorageError when it was not stored (the caller must not acknowledge)."""
        new = _new_event(event.key, event)
        outcome: db.AppendOutcome = await self._submit(_Op("append", self._loop.create_future(), 0, new))
        if outcome.duplicate:
            if outcome.conflicting:
                done: tuple[str, str] = await self._submit(
                    _Op("reconcile", self._future(), new=new, values={"event": event}))
                self._log_copy(event, *done)
                if done[0] == "refused":
                    raise ConflictLimit(f"copy of {event.key} not stored: {done[1]}")
            self._count("duplicate")
            return False
        return True  # counted "stored" with its batch, in _after_commit

    def _log_copy(self, event: Event, outcome: str, detail: str) -> None:
        """Log and count what reconciling a copy did (outcome of :meth:`_reconcile`)."""
        fields = {"key": event.key, "register": event.register_id}
        if outcome == "copy":
            log.debug("duplicate is a copy of the stored event", extra=fields)
            return
        if outcome == "refused":
            self._conflict_limit(event, detail)
            return
        if outcome == "merged-queued":  # into a row of the operator queue: what a retry sends changed
            self._count("merged")
            log.warning("copy merged into an event in the operator queue: a retry sends the merged version",
                        extra={**fields, "detail": detail, "action": "posgw queue list shows what it adds"})
            return
        if outcome == "conflict-queued":  # this copy waits in the operator queue already: nothing new
            self._count("conflict")
            self._log_conflict(event, detail)
            return  # the alarm stays: another copy of the key may still be refused (only a store clears it)
        self._count(outcome)
        if outcome == "correction":  # a new row to send: the sender need not wait for its poll
            self._new_rows.set()
        if outcome == "merged":
            log.info("copy merged into the stored event", extra={**fields, "detail": detail})
        elif outcome == "correction":
            log.info("copy adds the customer to a delivered sale: correction queued",
                     extra={**fields, "correction": detail})
        else:
            self._log_conflict(event, detail)
            if event.key in self._refused:  # stored again: the operator made room
                self._refused.discard(event.key)
                self._alarm(event, None)

    def _conflict_limit(self, event: Event, detail: str) -> None:
        """A conflicting copy refused (not stored): ERROR and an alarm once per key, until one is stored."""
        self._count("refused")
        if event.key in self._refused:
            log.debug("conflicting copy refused again",
                      extra={"key": event.key, "register": event.register_id})
            return
        self._refused.add(event.key)
        message = (f"key {event.key}: {detail}; the till is answered 'not stored' and resends it. "
                   "Resolve the queued conflicts (posgw queue list) and check the till's receipt numbering")
        self._alarm(event, message)
        log.error("conflicting copy refused: too many conflicting copies of its key in the operator queue",
                  extra={"key": event.key, "register": event.register_id, "note": detail,
                         "action": "posgw queue list / resolve the conflicts of this key; check the till's "
                                   "numbering (a key reused for other receipts)"})

    def _alarm(self, event: Event, message: str | None) -> None:
        """The alarm of the driver that sent ``event`` (its receipt's driver, else "outbox")."""
        if self._metrics is not None:
            driver = (event.receipt.driver if event.receipt is not None else "") or "outbox"
            self._metrics.alarm(driver, f"conflicts:{event.key}", message)

    def _log_conflict(self, event: Event, detail: str) -> None:
        log.warning("duplicate key with other content, the stored event is kept", extra={
            "key": event.key, "register": event.register_id, "note": detail,
            "action": "the copy is in the operator queue (posgw queue list): resolve it, or retry it to "
                      "deliver it instead if the stored one was never applied; check the till's numbering"})

    def _reconcile(
        self, conn: Connection, event: Event, now: float, new: db.NewEvent | None = None, *,
        capped: bool = True,
    ) -> tuple[str, str]:
        """Writer thread, in the batch's transaction: reconcile ``event`` with the row stored under
        its key (re-read here, so the decision and the write are one atomic step). Returns
        (outcome, detail): copy | merged | merged-queued (into a rejected row) | correction |
        conflict | conflict-queued (this copy is a conflict row already: nothing stored) | refused
        (not stored: :class:`ConflictLimit`) (module docstring). ``new``: the copy as append
        encoded it (else encoded here when needed). ``capped=False``: a copy the till was already
        told is stored (merged in flight, reconciled at delivery): a conflict is stored even past
        :data:`MAX_OPEN_CONFLICTS`, never refused."""
        row = db.fetch_key(conn, event.key)
        if row is None:  # pragma: no cover - the append just found it
            return "copy", ""
        try:
            stored = event_from_json(row.payload)
        except (ValueError, KeyError, TypeError):
            return self._store_conflict(conn, event, row, "the stored payload cannot be read", now, new,
                                        capped=capped)
        merge = merge_copies(stored, event)
        if merge.verdict == CopyVerdict.SAME:
            return "copy", ""
        if (merge.verdict == CopyVerdict.CONFLICT and row.state in (db.RowState.WAITING, db.RowState.PENDING)
                and stored.kind in (EventKind.REFUND, EventKind.CANCEL)
                and stored.sale_key != event.sale_key):
            # a waiting refund / cancel names a sale the core never saw; this copy names its sale
            # as the driver knows it now (e.g. Poster: the transaction id, then the closed order's
            # key): the new reference replaces the old one and the row goes out again at once
            again = merge_copies(replace(stored, sale_key=event.sale_key), event)
            if again.verdict != CopyVerdict.CONFLICT:  # (pending: not tried yet, the core was away)
                db.replace_payload(conn, row.id, event_to_json(again.event), _envelope(again.event), now,
                                   (db.RowState(row.state),))
                if row.state == db.RowState.WAITING:
                    db.transition(conn, db.Action.WAKE, [(row.id, {"reason": ""})], now)
                return "merged", f"row {row.id}: sale {stored.sale_key} -> {event.sale_key}"
        if merge.verdict == CopyVerdict.CONFLICT:
            return self._store_conflict(conn, event, row, merge.why, now, new, capped=capped)
        if row.state == db.RowState.REJECTED:  # the operator's retry will send the merge: say so
            changed = _changes(stored, merge.event)
            note = (f"a later copy replaced this content at {_iso(now)} (it adds: {changed}); "
                    f"posgw queue retry sends the merged version. {row.last_error}")
            db.replace_payload(conn, row.id, event_to_json(merge.event), _envelope(merge.event), now,
                               (db.RowState.REJECTED,), last_error=note)
            return "merged-queued", f"row {row.id} (rejected, {row.reason}) now also has: {changed}"
        undelivered = (db.RowState.PENDING, db.RowState.WAITING)
        if db.replace_payload(conn, row.id, event_to_json(merge.event), _envelope(merge.event), now,
                              undelivered):
            return "merged", f"row {row.id} ({row.state})"
        if not merge.adds_loyalty:  # delivered: fiscal details only, the core needs nothing
            return "copy", ""
        merged, before = merge.event, stored.receipt
        after = merged.receipt
        # delivered: only the customer can be attached afterwards (merge_copies guarantees the
        # stored copy had none); anything else that is new (points, hold, offline) cannot be
        if (merged.kind != EventKind.SALE or after is None or before is None or after.customer is None
                or (after.redeem_points, after.redeem_max) != (before.redeem_points, before.redeem_max)
                or (merged.hold_id, merged.offline, merged.expected_redeemed)
                != (stored.hold_id, stored.offline, stored.expected_redeemed)):
            why = "a copy after delivery that spends points or takes a hold cannot be corrected automatically"
            return self._store_conflict(conn, event, row, why, now, new, capped=capped)
        fix = correction_event(merged)
        if not self._insert(conn, fix, now).duplicate:
            return "correction", fix.key
        # a correction of the sale is stored already: the same late copy again (one correction),
        # unless this copy names another customer than that correction attaches: a conflict
        known = db.fetch_key(conn, fix.key)
        try:
            attached = event_from_json(known.payload) if known is not None else None
        except (ValueError, KeyError, TypeError):
            attached = None
        if attached is not None and merge_copies(attached, fix).verdict != CopyVerdict.CONFLICT:
            return "copy", ""
        who = attached.receipt.customer if attached is not None and attached.receipt is not None else None
        why = (f"another customer: the correction {fix.key} (row {known.id}, {known.state}) attaches "
               f"{who.kind}:{who.value}" if known is not None and who is not None
               else f"the stored correction {fix.key} cannot be read")
        return self._store_conflict(conn, event, row, why, now, new, capped=capped)

    def _deliver_sent(
        self, conn: Connection, acks: list[tuple[OutboxRow, bytes]], now: float,
    ) -> list[tuple[Event, str, str]]:
        """Writer thread: :meth:`mark_acked`. Returns (merged event, outcome, detail) for every
        row a copy was merged into while it was in flight (none, nearly always: then this is one
        statement)."""
        if db.deliver_sent(conn, [(was.id, was.payload, res) for was, res in acks], now) == len(acks):
            return []
        out: list[tuple[Event, str, str]] = []
        for was, res in acks:
            now_row = db.fetch_key(conn, was.key)
            if (now_row is None or now_row.id != was.id or now_row.state != db.RowState.PENDING
                    or bytes(now_row.payload) == was.payload):
                continue  # delivered just now, or not pending (nothing to deliver)
            # the core applied what was sent: the row says so, then the merge is a later copy
            db.replace_payload(conn, was.id, was.payload, was.envelope, now, (db.RowState.PENDING,))
            db.deliver_sent(conn, [(was.id, was.payload, res)], now)
            merged = _to_row(now_row).event
            # the till was told "stored" when the copy merged: never refused now (ConflictLimit)
            out.append((merged, *self._reconcile(conn, merged, now, capped=False)))
        return out

    def _reject_sent(
        self, conn: Connection, rows: list[tuple[int, dict[str, Any]]], sent: list[OutboxRow], now: float,
    ) -> int:
        """Writer thread: :meth:`mark_rejected` with the row as sent. The core refused the content
        sent; a row merged since is rejected with the merge (what ``posgw queue retry`` sends: the
        core never applied the key) and its last_error says so first."""
        changed = db.transition(conn, db.Action.REJECT, rows, now, [r.payload for r in sent])
        if changed == len(rows):
            return changed
        for (row_id, values), was in zip(rows, sent, strict=True):
            now_row = db.fetch_key(conn, was.key)
            if (now_row is None or now_row.id != row_id or now_row.state != db.RowState.PENDING
                    or bytes(now_row.payload) == was.payload):
                continue
            note = (f"a later copy was merged into this event while the core refused the content sent (it "
                    f"adds: {_changes(was.event, _to_row(now_row).event)}); posgw queue retry sends the "
                    f"merged version. ")
            noted = {**values, "last_error": (note + values["last_error"])[:2000]}
            changed += db.transition(conn, db.Action.REJECT, [(row_id, noted)], now)
        return changed

    def _insert(self, conn: Connection, event: Event, now: float) -> db.AppendOutcome:
        (out,), _ = db.insert_events(conn, [_new_event(event.key, event)], now, None)
        self._reseq.add(event.register_id)  # the seq cache may be behind now: read it again
        return out

    def _store_conflict(
        self, conn: Connection, event: Event, row: Any, why: str, now: float, new: db.NewEvent | None = None,
        *, capped: bool = True,
    ) -> tuple[str, str]:
        """The copy as a rejected row ``<key>:conflict:<n>`` (the same copy twice: one row; n one
        more than the highest so far). Never dropped: with :data:`MAX_OPEN_CONFLICTS` of them
        waiting in the operator queue already, the copy is refused ("refused": append raises
        :class:`ConflictLimit`, nothing stored, nothing acknowledged) instead of growing the queue
        without bound behind one key; the operator resolving some makes room again. ``capped=False``
        (a copy merged in flight, reconciled at delivery: the till was told "stored" then) stores it
        past the cap: the cap refuses only copies that can still be refused."""
        new = new if new is not None and new.key == event.key else _new_event(event.key, event)
        known = db.fetch_conflicts(conn, event.key)
        for n, _, payload in known:
            if payload == new.payload:
                return "conflict-queued", f"{why} (already in the operator queue as {event.key}:conflict:{n})"
        waiting = sum(1 for _, state, _ in known if state == db.RowState.REJECTED)
        if capped and waiting >= MAX_OPEN_CONFLICTS:
            return "refused", f"{why}; {waiting} conflicting copies of it wait in the operator queue already"
        key = f"{event.key}:conflict:{max((n for n, _, _ in known), default=0) + 1}"
        db.insert_events(conn, [replace(new, key=key)], now, None)
        self._reseq.add(event.register_id)
        created = db.fetch_key(conn, key)
        assert created is not None
        try:
            before = _summary(event_from_json(row.payload))
        except (ValueError, KeyError, TypeError):
            before = "unreadable"
        message = (f"key {event.key} is stored as row {row.id} ({row.state}) with other content: {why}. "
                   f"stored: {before}; this copy (row {created.id}): {_summary(event)}")
        db.transition(conn, db.Action.REJECT, [(created.id, {"reason": "RECEIPT_CONFLICT",
                                                             "last_error": message[:2000]})], now)
        return "conflict", f"{why} (in the operator queue as {key})"

    async def _transition(self, action: db.Action, rows: list[tuple[int, dict[str, Any]]]) -> int:
        """Queue one state change (:data:`gateway.outbox_db.TRANSITIONS`) for the group commit;
        returns how many of ``rows`` changed state."""
        changed: int = await self._submit(_Op(action, self._future(), values={"rows": rows}))
        return changed

    async def mark_delivered(self, row_id: int, result_json: str) -> None:
        await self._transition(db.Action.DELIVER, [(row_id, {"result_json": result_json, "last_error": ""})])

    async def mark_delivered_many(self, items: list[tuple[int, bytes]]) -> None:
        """Several acks in one transaction: each item is (row id, the core's serialized
        ``EventAck``), stored as received and shown as ``result_json`` on demand. Whatever the
        row holds now is marked delivered: the sender uses :meth:`mark_acked`."""
        if items:
            await self._transition(
                db.Action.DELIVER, [(row_id, {"result": res, "last_error": ""}) for row_id, res in items]
            )

    async def mark_acked(self, items: list[tuple[OutboxRow, bytes]]) -> None:
        """The sender's acks, in one transaction: each item is (the row as read for sending, the
        core's serialized ``EventAck``). The core applied the content that was sent: a row whose
        payload is still that one is marked delivered; a row a later copy was merged into since
        (the copy came while the event was on its way) is marked delivered with the content sent
        (payload and envelope put back), and the merge is reconciled with it as a copy arriving
        after delivery: a correction when it adds the customer, else a conflict row in the
        operator queue, or nothing when it adds only fiscal data (module docstring). All in the
        one writer transaction of the mark, so no copy is lost and none is applied twice."""
        if not items:
            return
        merged: list[tuple[Event, str, str]] = await self._submit(
            _Op(db.Action.DELIVER, self._future(), values={"acks": items}))
        for event, outcome, detail in merged:
            log.warning("a copy was merged into the event while it was on its way to the core: the core "
                        "applied the content sent; the copy's additions are reconciled as a later copy",
                        extra={"key": event.key, "register": event.register_id, "outcome": outcome})
            self._log_copy(event, outcome, detail)

    async def mark_rejected(
        self, row_id: int, reason: str, message: str, *, sent: OutboxRow | None = None,
    ) -> None:
        """pending (or waiting) -> rejected. ``sent``: the row as the sender sent it, refused by
        the core; if a copy was merged into it since, its last_error says first that a retry
        sends the merged version and what that adds."""
        values = {"reason": reason, "last_error": message[:2000]}
        if sent is None:
            await self._transition(db.Action.REJECT, [(row_id, values)])
        else:
            await self._submit(_Op(db.Action.REJECT, self._future(), values={"rows": [(row_id, values)],
                                                                             "sent": [sent]}))

    async def mark_waiting(self, row_id: int, attempts: int, reason: str, message: str) -> bool:
        """pending -> waiting: the core deferred the row (its sale is not known yet); ``attempts``
        (the row's count of waits so far + 1) spaces the next try. False if it was not pending."""
        values = {"reason": reason, "last_error": message[:2000], "attempts": attempts}
        return await self._transition(db.Action.WAIT, [(row_id, values)]) > 0

    async def wake(self, row_ids: list[int]) -> int:
        """waiting -> pending (due again); returns how many were woken."""
        n = await self._transition(db.Action.WAKE, [(i, {"reason": ""}) for i in row_ids]) if row_ids else 0
        if n:
            self._new_rows.set()
        return n

    async def waiting(self, limit: int = 10_000) -> list[OutboxRow]:
        """Rows set aside until their sale is known, oldest first."""
        rows = await self._read(lambda c: db.fetch_state(c, db.RowState.WAITING, limit))
        return [_decode(r) for r in rows]

    async def note_retry(self, row_id: int, error: str) -> None:
        await self._submit(_Op("note_retry", self._future(), row_id, values={"error": error}))

    async def retry(self, row_id: int) -> bool:
        """Operator: rejected -> pending (delivered again with the same key). False if not rejected."""
        ok = await self._transition(db.Action.RETRY, [(row_id, {"reason": ""})]) > 0
        if ok:
            self._new_rows.set()
        return ok

    async def resolve(self, row_id: int, note: str) -> bool:
        """Operator: rejected -> resolved with a note (handled outside the gateway). False if not rejected."""
        return await self._transition(db.Action.RESOLVE, [(row_id, {"note": note})]) > 0

    async def put_state(self, driver: str, key: str, value: str, *, keep_s: float | None = None) -> None:
        """Durably set a driver's state ``key`` (group-committed like an append); it is forgotten
        ``keep_s`` seconds after this put (None: kept until overwritten)."""
        if keep_s is not None and keep_s <= 0:
            raise ValueError(f"keep_s must be positive, not {keep_s}")
        values = {"driver": driver, "key": key, "value": value, "keep_s": keep_s}
        await self._submit(_Op("state", self._future(), values=values))

    async def get_state(self, driver: str, key: str) -> str | None:
        """A driver's value for ``key`` (None: unknown or expired). Reads asked for while one trip
        to the reader thread is under way go together in the next trip: one thread hand-off per
        batch of reads, not per read (every sale reads its calc memory)."""
        if self._closed:
            raise StorageError(f"the outbox {self.path} is closed")
        answer: asyncio.Future[str | None] = self._loop.create_future()
        self._state_reads.append((driver, key, answer))
        if self._state_reader is None or self._state_reader.done():
            self._state_reader = self._loop.create_task(self._read_states(), name="outbox-state-reads")
        return await answer

    async def state_keys(self, driver: str, limit: int) -> list[tuple[str, float | None]]:
        """At most ``limit`` of ``driver``'s live keys holding a non-empty value, with when each
        expires (wall clock; None: never), in no particular order."""
        now = self._clock()
        return await self._read(functools.partial(db.state_keys, driver=driver, now=now, limit=limit))

    async def _read_states(self) -> None:
        """Answer the queued :meth:`get_state` reads, a batch per reader-thread trip, until none is left."""
        while self._state_reads:
            batch, self._state_reads = self._state_reads, []
            now = self._clock()
            self.state_read_trips += 1
            try:
                values = await self._read(functools.partial(_state_values, keys=[(d, k) for d, k, _ in batch],
                                                            now=now))
            except Exception as exc:  # every waiter gets the failure; nobody may hang on it
                for _, _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc if isinstance(exc, StorageError) else StorageError(str(exc)))
                continue
            for (_, _, answer), value in zip(batch, values, strict=True):
                if not answer.done():
                    answer.set_result(value)

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _put(self, op: _Op) -> None:
        if self._closed:
            raise StorageError(f"the outbox {self.path} is closed")
        await self._slots.acquire()
        if self._closed:
            self._slots.release()
            raise StorageError(f"the outbox {self.path} is closed")
        self._ops.put(op)

    async def _submit(self, op: _Op) -> Any:
        await self._put(op)
        return await op.future

    def _count(self, outcome: str, n: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.child(self._metrics.outbox_writes, outcome).inc(n)

    # The writer thread: takes what is queued, writes it in one transaction, hands the results
    # to the loop in one callback and goes on; it never waits for the loop.

    def _writer_main(self) -> None:
        stop = False
        while not stop:
            first = self._ops.get()
            if first is None:
                break
            ops = [first]
            while len(ops) < self._max_batch:
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                ops.append(nxt)
            try:
                results = self._write_batch(ops)
            except Exception as exc:  # the writer supervises its waiters: nobody may hang on a bug
                if not isinstance(exc, StorageError):
                    log.exception("outbox writer bug", extra={"ops": len(ops)})
                self._to_loop(self._write_failed, ops, exc)
                continue
            self._to_loop(self._after_commit, ops, results)
        if self._wconn is not None:
            with contextlib.suppress(Exception):
                self._wconn.close()
            self._wconn = None
        left: list[_Op] = []
        while True:  # whatever raced with close() is refused
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                break
            if op is not None:
                left.append(op)
        self._to_loop(self._writer_stopped, left)

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _write_failed(self, ops: list[_Op], exc: Exception) -> None:
        self._slots_release(len(ops))
        n = sum(1 for op in ops if op.kind == "append")
        self._count("failed", n)
        self._storage_failed(str(exc), n)
        for op in ops:
            if not op.future.done():
                op.future.set_exception(StorageError(str(exc)))

    def _writer_stopped(self, left: list[_Op]) -> None:
        self._closed = True
        while True:  # put after the thread's last look (the thread has ended: nobody else reads)
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                break
            if op is not None:
                left.append(op)
        for op in left:
            if not op.future.done():
                op.future.set_exception(StorageError(f"the outbox {self.path} is closed"))
        self._slots_release(len(left))
        if not self._writer.done():
            self._writer.set_result(None)

    def _slots_release(self, n: int) -> None:
        for _ in range(n):
            self._slots.release()

    def _storage_failed(self, error: str, events: int) -> None:
        """A write failed: ERROR once when the outbox turns unwritable, then a reminder at most
        every REMIND_EVERY_S (with what was refused meanwhile), never one per refused write."""
        now = self._clock()
        self._last_storage_error = error
        self._failed_since_change += events
        if self._writable:
            self._writable = False
            self._unwritable_since = self._last_reminder = now
            self._failed_since_change = 0
            self._set_writable_gauge(False)
            log.error("outbox not writable: sales are refused (the tills are asked to resend)", extra={
                "path": str(self.path), "error": error, "events": events,
                "action": "free space on the disk / check it; writes resume by themselves when they succeed",
            })
        elif now - self._last_reminder >= REMIND_EVERY_S:
            log.error("outbox still not writable", extra={
                "path": str(self.path), "error": error, "for_s": round(now - self._unwritable_since, 1),
                "refused_events": self._failed_since_change})
            self._last_reminder = now
            self._failed_since_change = 0

    def _storage_recovered(self) -> None:
        """A write succeeded after failures: ERROR once, closing what the first one opened."""
        now = self._clock()
        self._writable = True
        self._set_writable_gauge(True)
        log.error("outbox writable again", extra={
            "path": str(self.path), "after_s": round(now - self._unwritable_since, 1),
            "last_error": self._last_storage_error,
            "refused_events_since_reminder": self._failed_since_change})
        self._failed_since_change = 0

    def _set_writable_gauge(self, writable: bool) -> None:
        if self._metrics is not None:
            self._metrics.outbox_writable.set(1 if writable else 0)

    def _after_commit(self, ops: list[_Op], results: list[Any]) -> None:
        self._slots_release(len(ops))
        if not self._writable:
            self._storage_recovered()
        self.commits += 1
        appended = 0
        progress = False
        for op, res in zip(ops, results, strict=True):  # one pass: this runs on the loop per batch
            if op.kind == "append":
                appended += not res.duplicate
            elif op.kind in _PROGRESS:
                progress = True
            if not op.future.done():
                op.future.set_result(res)
        self.rows_committed += appended
        if progress:
            self._last_progress = self._clock()
        if appended:
            self._new_rows.set()
        if self._metrics is not None:
            self._metrics.outbox_fsyncs.inc()
            if appended:
                self._metrics.outbox_batch_rows.observe(appended)
                self._count("stored", appended)

    def _write_batch(self, ops: list[_Op]) -> list[Any]:
        """Writer thread: every op of the batch in one transaction (one fsync)."""
        now = self._clock()
        try:
            if self._wconn is None:
                self._wconn = db.connect(self._engine, writer=True)
            conn = self._wconn
            with db.write_transaction(conn):
                # appends first, as one block (few statements per batch); then the state changes
                appends = [op for op in ops if op.kind == "append"]
                new = [op.new for op in appends if op.new is not None]
                appended, seqs = db.insert_events(conn, new, now, self._seqs) if new else ([], {})
                outcomes = iter(appended)
                results = [
                    next(outcomes) if op.kind == "append" else self._apply(conn, op, now) for op in ops
                ]
                if now - self._last_prune > PRUNE_EVERY_S:
                    db.prune_delivered(conn, now - self._keep_delivered_s)
                    db.prune_state(conn, now)
            self._seqs.update(seqs)  # committed: the cache may follow
            for reg in self._reseq:  # rows appended by _reconcile: read last_seq again
                self._seqs.pop(reg, None)
            self._reseq.clear()
            if now - self._last_prune > PRUNE_EVERY_S:
                self._last_prune = now
            return results
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            self._seqs.clear()  # whatever the file holds now, read it again
            self._reseq.clear()
            if self._wconn is not None:  # start the next batch on a fresh connection
                with contextlib.suppress(Exception):
                    self._wconn.close()
                self._wconn = None
            raise StorageError(f"cannot write the outbox {self.path}: {exc}") from exc

    def _apply(self, conn: Connection, op: _Op, now: float) -> Any:
        if isinstance(op.kind, db.Action):
            if "acks" in op.values:
                return self._deliver_sent(conn, op.values["acks"], now)
            if "sent" in op.values and op.kind == db.Action.REJECT:
                return self._reject_sent(conn, op.values["rows"], op.values["sent"], now)
            return db.transition(conn, op.kind, op.values["rows"], now)
        if op.kind == "note_retry":
            db.note_retry(conn, op.row_id, op.values["error"], now)
            return True
        if op.kind == "reconcile":
            return self._reconcile(conn, op.values["event"], now, op.new)
        if op.kind == "state":
            v = op.values
            db.put_state(conn, v["driver"], v["key"], v["value"], now, v["keep_s"])
            return None
        if op.kind == "ack_salvage":
            return db.acknowledge_salvages(conn, now)
        if op.kind == "pragmas":
            return {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                    for name in ("journal_mode", "synchronous", "busy_timeout")}
        raise ValueError(f"unknown outbox op {op.kind!r}")

    # ------------------------------------------------------------ reads (reader thread)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        if self._closed:
            raise StorageError(f"the outbox {self.path} is closed")

        def run() -> T:
            try:
                if self._rconn is None:
                    self._rconn = db.connect(self._engine, writer=False)
                try:
                    return fn(self._rconn)
                finally:
                    self._rconn.rollback()  # never keep a read snapshot open (it would pin the WAL)
            except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
                if self._rconn is not None:
                    with contextlib.suppress(Exception):
                        self._rconn.close()
                    self._rconn = None
                raise StorageError(f"cannot read the outbox {self.path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._rexec, run)

    async def next_batch(self, limit: int, *, after_id: int = 0) -> list[OutboxRow]:
        """Up to ``limit`` pending rows with id > ``after_id``, in append order (per register:
        seq order), each with its stored ``envelope`` ready to send (nothing is decoded: the
        envelope is only checked to parse, in the reader thread). A row with an empty envelope
        (migration could not build it, or an older posgw wrote the row) has it built from the
        payload now. A row that cannot be sent is rejected, not returned: UNREADABLE_PAYLOAD (the
        stored envelope does not parse, or the payload it must be built from cannot be read),
        INVALID_EVENT (an event the core could never accept, e.g. a sale without a receipt)."""

        def fetch(c: Connection) -> tuple[list[OutboxRow], list[tuple[db.SendRow, str, str]]]:
            # in the reader thread, rows and all: the event loop only gets them
            got = db.fetch_pending(c, limit, after_id)
            if _all_sendable([t[_ENVELOPE] for t in got]):  # nearly always: one check for the lot
                return [_pending_row(t, t[_ENVELOPE]) for t in got], []
            rows: list[OutboxRow] = []
            bad: list[tuple[db.SendRow, str, str]] = []
            for t in got:
                env = _sendable(t[_ENVELOPE], t[_PAYLOAD])
                if type(env) is bytes:
                    rows.append(_pending_row(t, env))
                else:
                    bad.append((db.SendRow(*t), *env))
            return rows, bad

        rows, bad = await self._read(fetch)
        for r, reason, message in bad:
            log.error("unsendable stored event, moved to the operator queue",
                      extra={"id": r.id, "key": r.key, "reason": reason, "error": message})
            await self.mark_rejected(r.id, reason, message)
        return rows

    async def get(self, row_id: int) -> OutboxRow | None:
        r = await self._read(lambda c: db.fetch_row(c, row_id))
        return None if r is None else _decode(r)

    async def rejected(self, limit: int = 10_000) -> list[OutboxRow]:
        rows = await self._read(lambda c: db.fetch_state(c, db.RowState.REJECTED, limit))
        return [_decode(r) for r in rows]

    async def recent(
        self, limit: int = 50, *, since: float = 0.0, until: float | None = None,
        state: db.RowState | None = None, oldest_first: bool = False,
    ) -> list[OutboxRow]:
        """Up to ``limit`` events (of any state, or of ``state``) stored at or after ``since`` (and
        before ``until``), newest first (or oldest first), decoded for display (the status page,
        ``posgw report``, ``posgw queue list --pending``); delivered rows are kept ``keep_delivered_s``.
        Read only: nothing is changed, not even for a payload that cannot be read."""
        q = select(db.events).where(db.events.c.created_at >= since)
        if until is not None:
            q = q.where(db.events.c.created_at < until)
        if state is not None:
            q = q.where(db.events.c.state == db.RowState(state).value)
        q = q.order_by(db.events.c.id if oldest_first else db.events.c.id.desc()).limit(limit)
        rows = await self._read(lambda c: c.execute(q).all())
        return [_decode(r) for r in rows]

    async def stats(self) -> OutboxStats:
        (pending, oldest, rejected, waiting), salvages = await self._read(
            lambda c: (db.counts(c), db.unacknowledged_salvages(c)))
        reports = tuple(_report(text) for _, text in salvages)
        now = self._clock()
        age = 0.0 if oldest is None else max(0.0, now - oldest)
        # stuck: something waits longer than stuck_after_s and nothing was delivered (or rejected)
        # for as long, judged from the file's own record, so a restart does not reset the clock
        stuck = pending > 0 and age > self._stuck_after_s and now - self._last_progress > self._stuck_after_s
        if self._metrics is not None:
            self._metrics.outbox_depth.set(pending)
            self._metrics.outbox_oldest_age.set(age)
            self._metrics.operator_queue.set(rejected)
            self._metrics.outbox_writable.set(1 if self._writable else 0)
            self._metrics.salvage_unacknowledged.set(len(reports))
            self._metrics.salvaged_rows.set(sum(r.salvaged for r in reports))
            self._metrics.salvage_lost_rows.set(sum(r.lost for r in reports))
        return OutboxStats(pending, age, rejected, self._writable, stuck, self._moved_aside,
                           self._last_storage_error, reports, waiting)

    async def ack_salvage(self) -> int:
        """Operator: acknowledge every salvage on record (the gateway stops reporting degraded);
        returns how many were acknowledged (0: nothing to acknowledge)."""
        n: int = await self._submit(_Op("ack_salvage", self._future()))
        if n:
            log.warning("outbox salvage acknowledged by the operator",
                        extra={"path": str(self.path), "salvages": n})
        return n

    async def pragmas(self) -> dict[str, Any]:
        """journal_mode and synchronous as the writer connection sees them (for checks and tests)."""
        out: dict[str, Any] = await self._submit(_Op("pragmas", self._future()))
        return out

    async def wait_pending(self, timeout: float) -> None:  # noqa: ASYNC109 - the contracted signature
        """Return when new rows were committed since the last call, or after ``timeout`` seconds."""
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation (bpo-42130)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._new_rows.wait()
        self._new_rows.clear()

    async def close(self) -> None:
        if self._writer.done():
            return
        self._ops.put(None)  # after everything queued before: those are written first
        await self._writer
        loop = asyncio.get_running_loop()

        def close_r() -> None:
            if self._rconn is not None:
                self._rconn.close()

        await loop.run_in_executor(self._rexec, close_r)
        self._rexec.shutdown(wait=True)
        self._engine.dispose()


class OutboxStateStore:
    """One driver's persisted state (:class:`gateway.driver.StateStore`) in the outbox file: a put
    is durable when it returns, and shares the events' group commit."""

    def __init__(self, outbox: Outbox, driver: str) -> None:
        self._outbox, self._driver = outbox, driver

    async def get(self, key: str) -> str | None:
        return await self._outbox.get_state(self._driver, key)

    async def put(self, key: str, value: str, *, keep_s: float | None = None) -> None:
        await self._outbox.put_state(self._driver, key, value, keep_s=keep_s)


def _to_row(r: Any, envelope: bytes | None = None) -> OutboxRow:
    return OutboxRow(
        id=r.id, key=r.key, register_id=r.register_id, register_seq=r.register_seq, kind=r.kind,
        payload=bytes(r.payload), state=db.RowState(r.state), attempts=r.attempts, created_at=r.created_at,
        last_error=r.last_error, result_json=r.result_json or ack_json(r.result), reason=r.reason,
        note=r.note, updated_at=r.updated_at, envelope=bytes(r.envelope) if envelope is None else envelope,
    )


_SEND_FIELDS = db.SendRow._fields
_ENVELOPE, _PAYLOAD = _SEND_FIELDS.index("envelope"), _SEND_FIELDS.index("payload")
_PENDING_FIXED = {"state": db.RowState.PENDING, "reason": "", "note": "", "result_json": ""}


def _pending_row(t: tuple[Any, ...], envelope: bytes) -> OutboxRow:
    """The :class:`OutboxRow` of a pending row read by :func:`gateway.outbox_db.fetch_pending`
    (``t``: its columns in :class:`~gateway.outbox_db.SendRow` order), with ``envelope`` to send.
    Filled in one step instead of the frozen dataclass's ``__init__`` (one ``object.__setattr__``
    per field: four times the cost, paid for every event of a backlog); the same fields and values
    as :func:`_to_row` of the whole row gives (the tests compare them)."""
    row = object.__new__(OutboxRow)
    fields_ = row.__dict__
    fields_.update(zip(_SEND_FIELDS, t, strict=True))
    fields_.update(_PENDING_FIXED)
    fields_["envelope"] = envelope
    return row


def _state_values(conn: Connection, *, keys: list[tuple[str, str]], now: float) -> list[str | None]:
    """Reader thread: the drivers' values of (driver, key) pairs, in order."""
    return [db.get_state(conn, driver, key, now) for driver, key in keys]


def _envelope(event: Event) -> bytes:
    """The envelope stored with ``event``; b"" for an event the core could never accept (the
    reader then names the problem: INVALID_EVENT)."""
    try:
        return envelope_body(event)
    except ValueError:
        return b""


def _new_event(key: str, event: Event) -> db.NewEvent:
    return db.NewEvent(key, event.register_id, EventKind(event.kind).value, event_to_json(event),
                       _envelope(event))


# the first byte of an envelope whose first field is one of its body's (fields 4-7, length-delimited)
_BODY_TAGS = frozenset(f.number << 3 | 2 for f in pb.EventEnvelope.DESCRIPTOR.oneofs_by_name["body"].fields)


def _all_sendable(envelopes: list[bytes]) -> bool:
    """Reader thread: True when every stored envelope can be sent as it is, as :func:`_sendable`
    would find one by one, checked at once: each begins with a field of its body (so a parsed one
    has a body) and all of them parse, as the events of one ``StreamEventsRequest`` (one parse
    instead of one per row). False: the caller looks at them one by one (an empty envelope to
    build, or one that cannot be sent: which, and why)."""
    for env in envelopes:
        if not env or env[0] not in _BODY_TAGS:
            return False
    try:
        pb.StreamEventsRequest.FromString(frame_batch(envelopes))
    except DecodeError:
        return False
    return True


def _sendable(envelope: bytes, payload: bytes) -> bytes | tuple[str, str]:
    """Reader thread: a row's envelope to send (its stored ``envelope``, or one built from its
    ``payload`` when none is stored), or (rejection reason, message)."""
    stored = bytes(envelope)
    if stored:
        try:
            if pb.EventEnvelope.FromString(stored).WhichOneof("body") is not None:
                return stored
        except DecodeError as exc:
            return "UNREADABLE_PAYLOAD", f"stored envelope cannot be read: {exc}"
        return "UNREADABLE_PAYLOAD", "stored envelope has no commit, refund, cancel or correction"
    try:
        event = event_from_json(payload)
    except (ValueError, KeyError, TypeError) as exc:
        return "UNREADABLE_PAYLOAD", f"stored payload cannot be read: {exc}"
    try:
        return envelope_body(event)
    except ValueError as exc:
        return "INVALID_EVENT", str(exc)


def ack_json(result: bytes) -> str:
    """The core's stored ``EventAck`` as the JSON ``result_json`` shows (``{"commit": {...}}``,
    protobuf field names, sorted keys); "" when nothing is stored or it cannot be read."""
    if not result:
        return ""
    try:
        ack = pb.EventAck.FromString(bytes(result))
    except DecodeError:
        return ""
    which = ack.WhichOneof("result")
    if which is None:
        return ""
    body = MessageToDict(getattr(ack, which), preserving_proto_field_name=True)
    return json.dumps({which: body}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _report(text: str) -> SalvageReport:
    """A recorded salvage; one whose JSON cannot be read still counts (and says so)."""
    try:
        return SalvageReport.from_json(text)
    except (ValueError, TypeError):
        return SalvageReport(source="?", into="?", complete=False, notes=("salvage record unreadable",))


def _decode(r: Any) -> OutboxRow:
    """A row for display (its event decoded when asked for: a placeholder if unreadable)."""
    return _to_row(r)


def _changes(before: Event, after: Event) -> str:
    """The fields a merge changed (the event's and its receipt's), by name, with the new values
    of the loyalty ones: "customer=phone:+7916..., fiscal_sign, payments"."""
    shown = {"customer", "redeem_points", "redeem_max", "hold_id", "offline", "expected_redeemed", "sale_key"}
    out: list[str] = []
    pairs: list[tuple[Any, Any]] = [(before, after)]
    if before.receipt is not None and after.receipt is not None:
        pairs.append((before.receipt, after.receipt))
    for old, new in pairs:
        for f in fields(old):
            if f.name in ("receipt", "_valid") or not f.compare:
                continue
            was, now = getattr(old, f.name), getattr(new, f.name)
            if was != now:
                if f.name == "customer" and now is not None:
                    out.append(f"customer={now.kind}:{now.value}")
                else:
                    out.append(f"{f.name}={now}" if f.name in shown else f.name)
    return ", ".join(out) or "nothing visible"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _summary(ev: Event) -> str:
    """One line naming what counts in a copy: goods, customer, points, hold, time."""
    r = ev.receipt
    if r is None:
        return (f"{ev.kind} of {ev.sale_key} lines={[(x.line_id, x.qty_milli) for x in ev.refund_lines]} "
                f"full={ev.refund_full} amount={ev.refund_amount} at {ev.occurred_at.isoformat()}")
    goods = ", ".join(f"{x.sku} {x.qty_milli / 1000:g}x={x.amount}" for x in r.lines)
    who = f"{r.customer.kind}:{r.customer.value}" if r.customer is not None else "no customer"
    return (f"{ev.kind} [{goods}] total={r.total} {who} redeem={r.redeem_points} hold={ev.hold_id or '-'} "
            f"at {ev.occurred_at.isoformat()}")
