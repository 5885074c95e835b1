"""The compliance suite of the poll shape: every poll driver against its fake vendor server.

A poll driver's ``test_compliance.py`` subclasses :class:`PollComplianceSuite` with a
:class:`PollAdapter` (how to run its fake vendor, build the driver against it with short
intervals, and make valid and malformed documents). Each check runs ``driver.run(ctx)`` with
an :class:`~tests.drivers.outbox_context.OutboxContext` (submit and state in a real outbox file
in ``tmp_path``) and asserts:

- **the cursor never passes a document that was not stored**: every cursor put is checked as
  it happens: each document the vendor would no longer give after the new cursor is in the
  outbox file or was recorded ``skipped:<id>``;
- nothing acknowledged (cursor advanced) while the durable write is held;
- a StorageError on the 3rd document leaves the cursor before it; a later resume (a restarted
  driver on the same file) stores all documents once;
- a document the vendor lists twice is stored once;
- a malformed document follows :mod:`gateway.poll`'s rule (``bad_input``, ``skipped:<id>``,
  passed) and stores nothing; the documents around it are stored;
- a restarted driver resumes from the stored cursor (nothing fetched twice);
- clean stop within 1 s while a fetch hangs, no task left behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest

from gateway.driver import Driver
from gateway.poll import CURSOR_KEY, SKIPPED_PREFIX
from gateway.receipt import Event
from tests.drivers.outbox_context import OutboxContext, until

HELD_S = 0.3
STOP_WITHIN_S = 1.0


class PollVendor(Protocol):
    fetches: int  # requests received (answered or stalled)

    def publish(self, *docs: Any) -> None:
        """Make ``docs`` visible after everything published so far."""
        ...

    def stall(self) -> None:
        """Hold every answer until :meth:`release`."""
        ...

    def release(self) -> None: ...

    def unread(self, cursor: str | None) -> list[str]:
        """Ids of the published documents the vendor would still give after ``cursor``."""
        ...


class PollAdapter:
    """How the suite drives one poll driver. Subclass and fill in every method."""

    name: ClassVar[str] = ""
    cursor_key: ClassVar[str] = CURSOR_KEY
    # the counter a document listed again bumps once; None for a driver whose cursor filters what it
    # took (overlapping windows re-read every document by design): nothing is submitted again
    relisted_counter: ClassVar[str | None] = "duplicate"

    def vendor(self) -> AbstractAsyncContextManager[PollVendor]:
        raise NotImplementedError

    def driver(self, vendor: PollVendor) -> Driver:
        """The driver against ``vendor``, with idle and backoff intervals of a few ms."""
        raise NotImplementedError

    def docs(self, n: int) -> list[Any]:
        """``n`` valid, distinct closed-sale documents as the vendor publishes them."""
        raise NotImplementedError

    def malformed(self) -> Any:
        """A document the driver's mapping refuses with BadInput."""
        raise NotImplementedError

    def doc_id(self, doc: Any) -> str:
        raise NotImplementedError

    def key(self, doc: Any) -> str:
        """The outbox key a valid document is stored under."""
        raise NotImplementedError


class Env:
    """One vendor, one outbox; the cursor check watching every context's state puts."""

    def __init__(self, adapter: PollAdapter, vendor: PollVendor, ctx: OutboxContext) -> None:
        self.adapter, self.vendor, self.ctx = adapter, vendor, ctx
        self.published: list[Any] = []
        self.skipped: set[str] = set()
        self.violations: list[str] = []
        self.watch(ctx)

    def publish(self, *docs: Any) -> None:
        self.published.extend(docs)
        self.vendor.publish(*docs)

    def watch(self, ctx: OutboxContext) -> None:
        def on_put(key: str, value: str) -> None:
            if key.startswith(SKIPPED_PREFIX):
                self.skipped.add(key.removeprefix(SKIPPED_PREFIX))
            elif key == self.adapter.cursor_key:
                unread, rows = set(self.vendor.unread(value)), set(ctx.rows())
                for doc in self.published:
                    doc_id = self.adapter.doc_id(doc)
                    if doc_id in unread or doc_id in self.skipped or self.adapter.key(doc) in rows:
                        continue
                    self.violations.append(f"cursor {value!r} passed {doc_id!r}, neither stored nor skipped")

        ctx.state.on_put = on_put

    def restarted(self) -> OutboxContext:
        self.ctx = self.ctx.fresh()
        self.watch(self.ctx)
        return self.ctx

    async def cursor(self) -> str | None:
        return await self.ctx.state.get(self.adapter.cursor_key)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        """``driver.run(ctx)`` as a task; on exit ``ctx.stopping`` is set and it must end promptly."""
        ctx = self.ctx
        task = asyncio.create_task(self.adapter.driver(self.vendor).run(ctx), name=f"{self.adapter.name}-run")
        try:
            yield task
        finally:
            ctx.stopping.set()
            started = time.monotonic()
            await asyncio.wait_for(task, STOP_WITHIN_S * 2)
            assert time.monotonic() - started < STOP_WITHIN_S, "the driver did not stop promptly"

    async def caught_up(self) -> None:
        """Wait until the cursor passed every published document."""
        end = time.monotonic() + 5
        while self.vendor.unread(await self.cursor()):
            assert time.monotonic() < end, f"cursor stuck at {await self.cursor()!r}"
            await asyncio.sleep(0.01)


class PollComplianceSuite:
    """Inherit in ``TestXxxPollCompliance`` and set ``adapter``."""

    adapter: ClassVar[PollAdapter]

    @pytest.fixture
    async def env(self, tmp_path: Path) -> AsyncIterator[Env]:
        ctx = await OutboxContext.open(self.adapter.name, tmp_path)
        try:
            async with self.adapter.vendor() as vendor:
                env = Env(self.adapter, vendor, ctx)
                yield env
                assert env.violations == [], env.violations
        finally:
            await ctx.outbox.close()

    def keys(self, docs: list[Any]) -> list[str]:
        return [self.adapter.key(d) for d in docs]

    async def test_documents_are_stored_once_and_the_cursor_follows(self, env: Env) -> None:
        docs = self.adapter.docs(5)
        env.publish(*docs)
        async with env.running():
            await env.caught_up()
        assert env.ctx.rows() == self.keys(docs)
        assert env.ctx.counts["committed"] == 5 and env.ctx.counts["polled"] >= 1

    async def test_no_cursor_advance_before_the_durable_write(
        self, env: Env, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        docs = self.adapter.docs(2)
        env.publish(*docs)
        original = env.ctx.outbox.append
        entered, release = asyncio.Event(), asyncio.Event()

        async def held(event: Event) -> bool:
            entered.set()
            await release.wait()
            return await original(event)

        monkeypatch.setattr(env.ctx.outbox, "append", held)
        async with env.running():
            await asyncio.wait_for(entered.wait(), 5)
            await asyncio.sleep(HELD_S)
            assert await env.cursor() is None, "cursor advanced before the durable write"
            assert env.ctx.rows() == []
            release.set()
            await env.caught_up()
        assert env.ctx.rows() == self.keys(docs)

    async def test_storage_error_on_the_third_document_holds_the_cursor_then_resume(self, env: Env) -> None:
        docs = self.adapter.docs(5)
        env.publish(*docs)
        env.ctx.fail_from = 3
        async with env.running():
            await until(lambda: env.ctx.counts["storage_error"] >= 2)  # failed, backed off, failed again
        assert env.ctx.rows() == self.keys(docs[:2])
        cursor = await env.cursor()
        assert self.adapter.doc_id(docs[2]) in env.vendor.unread(cursor), f"cursor {cursor!r} passed doc 3"
        resumed = env.restarted()
        async with env.running():
            await env.caught_up()
        assert resumed.rows() == self.keys(docs)
        assert resumed.counts["committed"] == 3

    async def test_a_document_listed_twice_is_stored_once(self, env: Env) -> None:
        a, b = self.adapter.docs(2)
        env.publish(a, b)
        async with env.running():
            await env.caught_up()
            env.publish(a)  # listed again later (another window, a late re-upload)
            await env.caught_up()
        assert env.ctx.rows() == self.keys([a, b])
        if self.adapter.relisted_counter is None:
            assert env.ctx.submitted == 2 and env.ctx.counts["duplicate"] == 0
        else:
            assert env.ctx.counts[self.adapter.relisted_counter] == 1

    async def test_a_malformed_document_is_skipped_by_the_rule_and_stores_nothing(self, env: Env) -> None:
        a, b = self.adapter.docs(2)
        bad = self.adapter.malformed()
        env.publish(a, bad, b)
        async with env.running():
            await env.caught_up()
        assert env.ctx.rows() == self.keys([a, b])
        assert env.ctx.counts["bad_input"] == 1
        assert await env.ctx.state.get(SKIPPED_PREFIX + self.adapter.doc_id(bad)) is not None

    async def test_a_restarted_driver_resumes_from_the_stored_cursor(self, env: Env) -> None:
        docs = self.adapter.docs(3)
        env.publish(*docs)
        async with env.running():
            await env.caught_up()
        ctx = env.restarted()
        more = self.adapter.docs(4)[3:]
        env.publish(*more)
        async with env.running():
            await env.caught_up()
        assert ctx.rows() == self.keys(docs + more)
        assert ctx.counts["duplicate"] == 0 and ctx.counts["committed"] == 1

    async def test_clean_stop_while_a_fetch_hangs(self, env: Env) -> None:
        env.publish(*self.adapter.docs(1))
        env.vendor.stall()
        before = asyncio.all_tasks()
        async with env.running() as task:
            await until(lambda: env.vendor.fetches >= 1)
            await asyncio.sleep(0.05)
        assert task.done() and task.exception() is None
        assert env.ctx.rows() == [] and await env.cursor() is None
        env.vendor.release()
        await asyncio.sleep(0.05)
        left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
        assert left == [], left
