"""The poll shape: a driver that pulls closed documents from its vendor with a cursor.

A poll driver supplies a :class:`PollSource` (fetch a page after a cursor, name a document,
map a document to an :class:`~gateway.receipt.Event`) and calls :func:`poll` from its
``run(ctx)``. The loop owns the cursor, the deadlines, the backoff and the stop.

Invariants:

- **The cursor never passes a document that was not stored.** The cursor lives in
  ``ctx.state`` under ``options.cursor_key`` (default :data:`CURSOR_KEY`) and is written only
  after every document of the page was submitted (``submit`` returned, so it is durable) or
  deliberately skipped (the skip record is durable too). A :class:`StorageError` mid-page, or a
  stop mid-page, leaves the cursor where it was: the whole page is fetched again later and the
  documents already stored come back as duplicates, which the outbox stores once (counted
  ``duplicate``).
- **A malformed document neither blocks polling nor vanishes.** When ``to_event`` (or
  ``submit``) raises :class:`BadInput`, the loop counts ``bad_input``, logs ERROR with the
  document id and the reason, records it durably in ``ctx.state`` under
  ``skipped:<document id>`` (JSON: reason, the cursor the page was fetched after, when;
  kept ``options.skipped_keep_s``) and goes on; nothing is stored in the outbox for it. An
  operator finds it there and in the log. ``to_event`` returning None means a document kind
  without loyalty (a shift report): counted ``ignored``, passed.
- **A key reused past the conflict cap does not stall the feed.** When the outbox refuses a
  document with :class:`~gateway.outbox.ConflictLimit` (its key already has
  :data:`~gateway.outbox.MAX_OPEN_CONFLICTS` conflicting copies in the operator queue), the loop
  records it skipped the same way (``skipped:<document id>``, with ``"key"`` and
  ``"reason": "conflict_limit"``), logs WARNING, raises the driver's alarm ``conflicts:<key>``
  (naming the document and its skip record; cleared, as the outbox does, once a copy of the key
  is stored again) and goes on. A till resends a refused copy by itself; a vendor's feed does
  not, and holding the cursor would stop every register's documents behind one vendor key
  reused over and over until an operator resolved its conflicts. As a malformed document, the
  skipped one is found in its skip record and the log; nothing here brings it back by itself
  (no command moves a cursor back). Any other StorageError keeps the cursor (first rule).
- **Every fetch has a deadline** (``options.fetch_timeout_s``). A failed or timed-out fetch is
  counted ``poll_failed`` and retried after an exponential backoff with full jitter (tenacity's
  ``wait_random_exponential``), from ``backoff_initial_s`` up to ``backoff_max_s``; a
  StorageError backs off the same way. Success resets the backoff.
- **Idle interval**: after a page that did not move the cursor (empty, or the vendor gave the
  same cursor back) the loop waits ``interval_s``; after a page that moved it, it fetches the
  next one at once.
- **Stop**: :func:`poll` returns as soon as ``ctx.stopping`` is set while it waits (a hanging
  fetch is cancelled, sleeps are cut short); it never abandons a ``submit`` that has begun, and
  checks the stop between documents.
- Anything ``to_event`` raises other than BadInput is a driver bug: it propagates, and the
  daemon's supervisor restarts ``run`` with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from tenacity import AsyncRetrying, RetryCallState, wait_random_exponential

from gateway.driver import DriverContext
from gateway.errors import BadInput, StorageError
from gateway.outbox import ConflictLimit
from gateway.receipt import Event

CURSOR_KEY = "poll:cursor"
SKIPPED_PREFIX = "skipped:"

Doc = TypeVar("Doc")


@dataclass(frozen=True, slots=True)
class Page(Generic[Doc]):
    """One answer of the vendor: ``docs`` after the cursor asked with, and the cursor to keep
    once all of them are stored (the vendor's opaque text; a driver may encode JSON in it)."""

    docs: Sequence[Doc]
    next_cursor: str


class PollSource(Protocol[Doc]):
    """What a poll driver supplies. ``doc_id`` and ``to_event`` are pure."""

    async def fetch(self, cursor: str | None) -> Page[Doc]:
        """The documents after ``cursor`` (None: from the start). Raise anything on vendor trouble."""
        ...

    def doc_id(self, doc: Doc) -> str:
        """The vendor's id of ``doc`` for logs and skip records; never raises."""
        ...

    def to_event(self, doc: Doc) -> Event | None:
        """The event to store; None for a document without loyalty; BadInput when malformed."""
        ...


@dataclass(frozen=True, slots=True)
class PollOptions:
    interval_s: float = 60.0  # idle wait after a page that did not move the cursor
    fetch_timeout_s: float = 30.0  # deadline on every fetch
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0
    cursor_key: str = CURSOR_KEY  # a driver polling several sources gives each its own key
    skipped_keep_s: float | None = 180 * 86400.0  # how long a skip record stays in ctx.state


class Step(enum.Enum):
    """What one :func:`poll_page` did; :func:`poll` decides the wait from it."""

    MOVED = "moved"  # the cursor advanced: fetch again at once
    IDLE = "idle"  # nothing new: wait interval_s
    FAILED = "failed"  # fetch failed or a document was not stored: back off
    STOPPED = "stopped"  # ctx.stopping was set


async def poll(ctx: DriverContext, source: PollSource[Doc], options: PollOptions | None = None) -> None:
    """Poll ``source`` until ``ctx.stopping`` is set (see the module docstring)."""
    opts = options or PollOptions()
    wait = wait_random_exponential(multiplier=opts.backoff_initial_s, max=opts.backoff_max_s)
    failures = 0
    while not ctx.stopping.is_set():
        step = await poll_page(ctx, source, opts)
        if step is Step.STOPPED:
            return
        if step is Step.FAILED:
            failures += 1
            state = RetryCallState(AsyncRetrying(), None, (), {})
            state.attempt_number = failures
            delay = float(wait(state))
        else:
            failures = 0
            delay = opts.interval_s if step is Step.IDLE else 0.0
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await ctx.stopping.wait()


async def poll_page(ctx: DriverContext, source: PollSource[Doc], options: PollOptions) -> Step:
    """Fetch one page after the stored cursor, store its documents, then advance the cursor."""
    cursor = await ctx.state.get(options.cursor_key)
    try:
        page = await _fetch(ctx, source, cursor, options.fetch_timeout_s)
    except Exception as exc:  # the vendor's trouble, whatever its type: count, back off, retry
        ctx.count("poll_failed")
        ctx.log.warning("poll failed", extra={"driver": ctx.name, "cursor": cursor, "error": repr(exc)})
        return Step.FAILED
    if page is None:
        return Step.STOPPED
    ctx.count("polled")
    for doc in page.docs:
        if ctx.stopping.is_set():
            return Step.STOPPED  # the cursor stays: this page is fetched again after the restart
        try:
            await _take(ctx, source, doc, cursor, options)
        except StorageError as exc:
            ctx.count("storage_error")
            ctx.log.warning("document not stored, cursor kept", extra={
                "driver": ctx.name, "doc": _safe_id(source, doc), "cursor": cursor, "error": str(exc)})
            return Step.FAILED
    if page.next_cursor == cursor:
        return Step.IDLE
    await ctx.state.put(options.cursor_key, page.next_cursor)
    return Step.MOVED if page.docs else Step.IDLE


async def _take(ctx: DriverContext, source: PollSource[Doc], doc: Doc, cursor: str | None,
                options: PollOptions) -> None:
    """Submit one document, or skip it by the rule; StorageError when neither is durable."""
    key = ""  # the event's key once mapped
    try:
        event = source.to_event(doc)
        if event is None:
            ctx.count("ignored")
            return
        key = event.key
        new = await ctx.submit(event)
    except BadInput as exc:
        doc_id = _safe_id(source, doc)
        ctx.count("bad_input")
        ctx.log.error("malformed document skipped",
                      extra={"driver": ctx.name, "doc": doc_id, "error": str(exc)})
        await _skip(ctx, doc_id, {"error": str(exc), "cursor": cursor}, options)
        return
    except ConflictLimit as exc:  # the outbox refused it; a feed never resends: record it, go on
        doc_id = _safe_id(source, doc)
        ctx.log.warning("document skipped: its key has too many conflicting copies in the operator queue",
                        extra={"driver": ctx.name, "doc": doc_id, "key": key, "error": str(exc),
                               "action": "resolve the key's conflicts (posgw queue list); check the "
                                         "vendor's numbering"})
        await _skip(ctx, doc_id, {"error": str(exc), "cursor": cursor, "key": key,
                                  "reason": "conflict_limit"}, options)
        ctx.alarm(f"conflicts:{key}", (
            f"document {doc_id} (key {key}) was skipped, not stored: {exc}. It is recorded as "
            f"{SKIPPED_PREFIX}{doc_id} in the driver's state; resolve the key's queued conflicts "
            "(posgw queue list) and check the vendor's numbering (a key reused for other documents)"))
        return
    ctx.count("committed" if new else "duplicate")


async def _skip(ctx: DriverContext, doc_id: str, record: dict[str, object], options: PollOptions) -> None:
    """The durable skip record of ``doc_id`` (``record`` and when)."""
    text = json.dumps({**record, "at": time.time()}, ensure_ascii=False)
    await ctx.state.put(SKIPPED_PREFIX + doc_id, text, keep_s=options.skipped_keep_s)


async def _fetch(ctx: DriverContext, source: PollSource[Doc], cursor: str | None,
                 timeout_s: float) -> Page[Doc] | None:
    """The page, None if ``ctx.stopping`` was set first; TimeoutError after ``timeout_s``."""
    fetching = asyncio.ensure_future(source.fetch(cursor))
    stopping = asyncio.ensure_future(ctx.stopping.wait())
    try:
        done, _ = await asyncio.wait({fetching, stopping}, timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (fetching, stopping):
            task.cancel()
        await asyncio.gather(fetching, stopping, return_exceptions=True)
    if fetching in done:
        return fetching.result()
    if stopping in done:
        return None
    raise TimeoutError(f"no answer within {timeout_s} s")


def _safe_id(source: PollSource[Doc], doc: Doc) -> str:
    try:
        return source.doc_id(doc)
    except Exception:  # a document too malformed to name: name it by its text
        return "unnamed-" + repr(doc)[:64]
