"""gateway.poll: cursor after the durable write, the skip rule, backoff, idle wait, prompt stop."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import outbox as outbox_module
from gateway.errors import BadInput, StorageError
from gateway.outbox import Outbox
from gateway.poll import CURSOR_KEY, Page, PollOptions, Step, poll, poll_page
from gateway.receipt import Event, EventKind
from tests.drivers.fake_context import FakeContext
from tests.gateway.outbox_fixtures import sale

FAST = PollOptions(interval_s=0.05, fetch_timeout_s=1.0, backoff_initial_s=0.01, backoff_max_s=0.05)
AT = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@dataclass
class Source:
    """Documents are dicts {"id", "seq"}; the cursor is the last seq as text; pages of ``size``."""

    docs: list[dict[str, object]] = field(default_factory=list)
    size: int = 10
    fail: Callable[[], Exception | None] = lambda: None
    hang: asyncio.Event | None = None  # when set, fetch waits on it (never set: hangs)
    asked: list[str | None] = field(default_factory=list)
    cancelled: int = 0

    async def fetch(self, cursor: str | None) -> Page[dict[str, object]]:
        self.asked.append(cursor)
        if self.hang is not None:
            try:
                await self.hang.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        error = self.fail()
        if error is not None:
            raise error
        after = int(cursor or 0)
        page = [d for d in self.docs if int(str(d["seq"])) > after][: self.size]
        return Page(page, str(page[-1]["seq"]) if page else (cursor or "0"))

    def doc_id(self, doc: dict[str, object]) -> str:
        return str(doc["id"])

    def to_event(self, doc: dict[str, object]) -> Event | None:
        if doc.get("kind") == "shift":
            return None
        if "bad" in doc:
            raise BadInput("total missing", "total")
        return Event(EventKind.SALE, f"k:{doc['id']}", "R1", AT)


def docs(n: int, start: int = 1) -> list[dict[str, object]]:
    return [{"id": f"D{i}", "seq": i} for i in range(start, start + n)]


class FailingContext(FakeContext):
    """FakeContext whose submits number ``fail_on`` raise StorageError (1-based, before storing)."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        super().__init__("pollt")
        self.fail_on = fail_on or set()

    async def submit(self, event: Event) -> bool:
        if len(self.submits) + 1 in self.fail_on:
            self.submits.append(event)
            raise StorageError("disk full (test)")
        return await super().submit(event)


async def test_a_page_is_stored_in_order_then_the_cursor_advances() -> None:
    ctx, src = FailingContext(), Source(docs(3))
    assert await poll_page(ctx, src, FAST) is Step.MOVED
    assert [e.key for e in ctx.submits] == ["k:D1", "k:D2", "k:D3"]
    assert ctx.state.data[CURSOR_KEY] == "3"
    assert await poll_page(ctx, src, FAST) is Step.IDLE
    assert src.asked == [None, "3"]
    assert ctx.counts == {"polled": 2, "committed": 3}


async def test_the_cursor_is_not_written_before_submit_returns() -> None:
    ctx, src = FailingContext(), Source(docs(2))
    ctx.gate = asyncio.Event()
    step = asyncio.create_task(poll_page(ctx, src, FAST))
    await asyncio.wait_for(ctx.submit_entered.wait(), 1)
    await asyncio.sleep(0.05)
    assert CURSOR_KEY not in ctx.state.data and not step.done()
    ctx.gate.set()
    assert await step is Step.MOVED
    assert ctx.state.data[CURSOR_KEY] == "2"


async def test_storage_error_mid_page_keeps_the_cursor_and_the_page_is_fetched_again() -> None:
    ctx, src = FailingContext(fail_on={3}), Source(docs(5))
    assert await poll_page(ctx, src, FAST) is Step.FAILED
    assert CURSOR_KEY not in ctx.state.data
    assert list(ctx.stored) == ["k:D1", "k:D2"]
    assert ctx.counts["storage_error"] == 1
    assert await poll_page(ctx, src, FAST) is Step.MOVED  # the same page again, from the same cursor
    assert src.asked == [None, None]
    assert list(ctx.stored) == [f"k:D{i}" for i in range(1, 6)]
    assert ctx.counts["duplicate"] == 2 and ctx.counts["committed"] == 5
    assert ctx.state.data[CURSOR_KEY] == "5"


async def test_a_malformed_document_is_recorded_skipped_and_passed(caplog: pytest.LogCaptureFixture) -> None:
    ctx = FailingContext()
    ctx.state.data[CURSOR_KEY] = "0"
    src = Source([{"id": "D1", "seq": 1}, {"id": "D2", "seq": 2, "bad": 1}, {"id": "D3", "seq": 3}])
    with caplog.at_level(logging.ERROR, logger=ctx.log.name):
        assert await poll_page(ctx, src, FAST) is Step.MOVED
    assert list(ctx.stored) == ["k:D1", "k:D3"]
    record = json.loads(ctx.state.data["skipped:D2"])
    assert record["error"] == "total: total missing" and record["cursor"] == "0"
    assert ctx.state.keep_s["skipped:D2"] == FAST.skipped_keep_s
    assert ctx.counts["bad_input"] == 1
    assert [r.__dict__["doc"] for r in caplog.records if r.levelno == logging.ERROR] == ["D2"]
    assert ctx.state.data[CURSOR_KEY] == "3"


async def test_submit_refusing_bad_input_follows_the_same_rule() -> None:
    ctx, src = FailingContext(), Source(docs(1))

    async def refuse(event: Event) -> bool:
        raise BadInput("calc token altered", "calc_token")

    ctx.submit = refuse  # type: ignore[method-assign]
    assert await poll_page(ctx, src, FAST) is Step.MOVED
    assert "skipped:D1" in ctx.state.data and ctx.state.data[CURSOR_KEY] == "1"


async def test_a_document_without_loyalty_is_ignored_and_passed() -> None:
    ctx, src = FailingContext(), Source([{"id": "S1", "seq": 1, "kind": "shift"}])
    assert await poll_page(ctx, src, FAST) is Step.MOVED
    assert ctx.submits == [] and ctx.counts["ignored"] == 1 and ctx.state.data[CURSOR_KEY] == "1"


async def test_the_same_cursor_given_back_is_idle_not_a_hot_loop() -> None:
    ctx, src = FailingContext(), Source(docs(1))
    ctx.state.data[CURSOR_KEY] = "1"
    src.fetch = lambda cursor: _page([{"id": "D1", "seq": 1}], "1")  # type: ignore[method-assign]
    assert await poll_page(ctx, src, FAST) is Step.IDLE
    assert ctx.counts["committed"] == 1


async def _page(d: list[dict[str, object]], cursor: str) -> Page[dict[str, object]]:
    return Page(d, cursor)


async def test_fetch_errors_and_timeouts_count_poll_failed() -> None:
    ctx = FailingContext()
    src = Source(docs(1), fail=lambda: ConnectionResetError("reset by peer"))
    assert await poll_page(ctx, src, FAST) is Step.FAILED
    hanging = Source(docs(1), hang=asyncio.Event())
    started = time.monotonic()
    assert await poll_page(ctx, hanging, PollOptions(fetch_timeout_s=0.1)) is Step.FAILED
    assert 0.09 < time.monotonic() - started < 0.5
    assert hanging.cancelled == 1
    assert ctx.counts["poll_failed"] == 2 and ctx.submits == [] and CURSOR_KEY not in ctx.state.data


async def test_poll_backs_off_with_a_bound_and_recovers() -> None:
    ctx = FailingContext()
    failing = {"left": 6}

    def fail() -> Exception | None:
        if failing["left"]:
            failing["left"] -= 1
            return OSError("vendor down")
        return None

    src = Source(docs(2), fail=fail)
    task = asyncio.create_task(poll(ctx, src, FAST))
    for _ in range(200):
        if ctx.state.data.get(CURSOR_KEY) == "2":
            break
        await asyncio.sleep(0.01)
    ctx.stopping.set()
    await asyncio.wait_for(task, 0.5)
    assert ctx.counts["poll_failed"] == 6 and list(ctx.stored) == ["k:D1", "k:D2"]


async def test_poll_waits_the_idle_interval_after_an_empty_page() -> None:
    ctx, src = FailingContext(), Source()
    task = asyncio.create_task(poll(ctx, src, PollOptions(interval_s=0.2)))
    await asyncio.sleep(0.3)
    ctx.stopping.set()
    await asyncio.wait_for(task, 0.1)  # the idle wait is cut short by the stop
    assert len(src.asked) == 2


async def test_stop_while_a_fetch_hangs_is_prompt() -> None:
    ctx, src = FailingContext(), Source(docs(1), hang=asyncio.Event())
    task = asyncio.create_task(poll(ctx, src, PollOptions(fetch_timeout_s=30)))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    ctx.stopping.set()
    await asyncio.wait_for(task, 0.5)
    assert time.monotonic() - started < 0.1
    assert src.cancelled == 1 and ctx.submits == []


async def test_stop_mid_page_finishes_the_submit_and_keeps_the_cursor() -> None:
    ctx, src = FailingContext(), Source(docs(3))
    ctx.gate = asyncio.Event()
    task = asyncio.create_task(poll(ctx, src, FAST))
    await asyncio.wait_for(ctx.submit_entered.wait(), 1)
    ctx.stopping.set()
    await asyncio.sleep(0.05)
    assert not task.done()  # never abandons a submit that has begun
    ctx.gate.set()
    await asyncio.wait_for(task, 0.5)
    assert list(ctx.stored) == ["k:D1"]
    assert CURSOR_KEY not in ctx.state.data


class SalesSource(Source):
    """Documents {"id", "seq", "n", "amount"}: the sale number ``n`` of register R1 (its key) for
    ``amount``; one ``n`` with other amounts is a vendor key reused for other goods."""

    def to_event(self, doc: dict[str, object]) -> Event | None:
        return sale("R1", int(str(doc["n"])), amount=int(str(doc["amount"])))


async def test_a_document_refused_by_the_conflict_cap_is_skipped_and_the_feed_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The outbox refuses a third copy of a key (ConflictLimit: one conflict queued already). A
    vendor never resends it: holding the cursor would stop the whole feed behind that key. It is
    recorded skipped (durably, with its key and why), WARNING, the alarm names it; the next
    document is stored and the cursor moves past both."""
    monkeypatch.setattr(outbox_module, "MAX_OPEN_CONFLICTS", 1)
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        ctx = FakeContext("pollt", outbox=ob)
        src = SalesSource([{"id": "D1", "seq": 1, "n": 1, "amount": 100},
                           {"id": "D2", "seq": 2, "n": 1, "amount": 200},  # conflict:1, the cap
                           {"id": "D3", "seq": 3, "n": 1, "amount": 300},  # refused by the outbox
                           {"id": "D4", "seq": 4, "n": 2, "amount": 400}])
        key = sale("R1", 1).key
        with caplog.at_level(logging.WARNING, logger=ctx.log.name):
            assert await poll_page(ctx, src, FAST) is Step.MOVED
        assert ctx.state.data[CURSOR_KEY] == "4"
        record = json.loads(ctx.state.data["skipped:D3"])
        assert (record["reason"], record["key"], record["cursor"]) == ("conflict_limit", key, None)
        assert "1 conflicting copies" in record["error"]
        assert ctx.state.keep_s["skipped:D3"] == FAST.skipped_keep_s
        [warning] = [r for r in caplog.records if r.name == ctx.log.name]
        assert (warning.levelno, warning.__dict__["doc"], warning.__dict__["key"]) == (
            logging.WARNING, "D3", key)
        assert "skipped:D3" in ctx.alarms[f"conflicts:{key}"] and "D3" in ctx.alarms[f"conflicts:{key}"]
        assert ctx.counts["committed"] == 2 and ctx.counts["duplicate"] == 1
        stored = {r.key: r for r in await ob.recent(10)}
        assert sorted(stored) == sorted([key, f"{key}:conflict:1", sale("R1", 2).key])  # nothing of D3
        assert stored[f"{key}:conflict:1"].event == sale("R1", 1, amount=200)
    finally:
        await ob.close()
