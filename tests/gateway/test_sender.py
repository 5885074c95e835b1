"""gateway.sender against a fake core on a real gRPC server (127.0.0.1:0): exactly-once
application, per-register order, rejections to the operator queue, dropped streams, slow acks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.metrics import Metrics
from gateway.outbox import Outbox, OutboxRow
from gateway.receipt import Event, EventKind
from gateway.sender import Sender
from tests.gateway.fake_core import (
    ACK,
    Action,
    FakeCore,
    InProcCall,
    InProcClient,
    Served,
    rpc_error,
    serve,
    start_server,
    started_client,
)
from tests.gateway.outbox_fixtures import T0, refund, sale

FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "idle_poll_s": 0.05}


@asynccontextmanager
async def running(sender: Sender) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def setup(tmp_path: Path, script: Callable[[pb.EventEnvelope, int], Action] | None = None,
                ) -> tuple[Outbox, FakeCore, Served, Metrics]:
    metrics = Metrics()
    ob = await Outbox.open(tmp_path / "o.db", metrics=metrics)
    core = FakeCore(script)
    served = await serve(core, metrics)
    return ob, core, served, metrics


def expected_order(events: list[Event], skip: set[str] = frozenset()) -> dict[str, list[str]]:  # type: ignore[assignment]
    out: dict[str, list[str]] = {}
    for e in events:
        if e.key not in skip:
            out.setdefault(e.register_id, []).append(e.key)
    return out


async def append_all(ob: Outbox, events: list[Event]) -> None:
    for e in events:
        assert await ob.append(e)


async def test_delivers_everything_once_in_register_order(tmp_path: Path) -> None:
    ob, core, served, m = await setup(tmp_path)
    try:
        events = [sale(f"R{i % 3}", i) for i in range(150)]
        await append_all(ob, events)
        sender = Sender(ob, served.client, metrics=m, window=16, batch=10, **FAST)
        assert await sender.drain(20)
        assert dict(core.order) == expected_order(events)
        assert set(core.applications.values()) == {1}
        assert max(core.seen.values()) == 1  # no failure: nothing resent
        assert core.streams == 1
        assert m.registry.get_sample_value("posgw_delivered_total", {"kind": "sale"}) == 150
        row = await ob.get(1)
        assert row is not None and row.state == "delivered"
        assert json.loads(row.result_json)["commit"]["operation_id"].startswith("op-")
    finally:
        await served.close()
        await ob.close()


async def test_new_events_are_picked_up_while_running(tmp_path: Path) -> None:
    ob, core, served, m = await setup(tmp_path)
    try:
        sender = Sender(ob, served.client, metrics=m, ack_timeout_s=5, **{**FAST, "idle_poll_s": 30})
        async with running(sender):
            events = [sale("R1", i) for i in range(20)]
            for e in events:
                await ob.append(e)
                await asyncio.sleep(0)
            for _ in range(200):
                if len(core.order["R1"]) == 20:
                    break
                await asyncio.sleep(0.01)
        assert core.order["R1"] == [e.key for e in events]  # woken by appends, not by the 30 s poll
    finally:
        await served.close()
        await ob.close()


async def test_permanent_rejection_goes_to_queue_and_blocks_nothing(tmp_path: Path) -> None:
    events = [sale("R1", i) for i in range(6)]
    bad = events[2].key
    reject = Action("reject", reason="INSUFFICIENT_POINTS")
    ob, core, served, m = await setup(tmp_path, lambda env, n: reject if env.event_id == bad else ACK)
    try:
        rf = refund("R1", 1, bad)  # a refund of the rejected sale: it waits for the sale
        await append_all(ob, [*events, rf])
        sender = Sender(ob, served.client, metrics=m, **FAST)
        assert await sender.drain(10)  # the refund is set aside: nothing pending
        assert core.order["R1"] == [e.key for e in events if e.key != bad]
        queue = await ob.rejected()
        assert [(r.key, r.reason) for r in queue] == [(bad, "INSUFFICIENT_POINTS")]
        assert m.registry.get_sample_value("posgw_rejected_total", {"reason": "INSUFFICIENT_POINTS"}) == 1
        assert [(r.key, r.reason) for r in await ob.waiting()] == [(rf.key, "SALE_NOT_YET_KNOWN")]
        assert (await ob.stats()).waiting == 1  # shown on /healthz and /status as waiting_for_sale
        # operator: retry the sale (the core now accepts it); its delivery wakes the refund
        core.script = lambda env, n: ACK
        core.rejected.clear()
        async with running(sender):
            assert await ob.retry(queue[0].id)
            for _ in range(500):
                if core.order["R1"][-2:] == [bad, rf.key]:
                    break
                await asyncio.sleep(0.01)
        assert core.order["R1"][-2:] == [bad, rf.key]
        assert await ob.rejected() == [] and await ob.waiting() == []
    finally:
        await served.close()
        await ob.close()


async def test_a_refund_before_its_sale_waits_without_blocking_its_register(tmp_path: Path) -> None:
    """The refund overtakes its sale (another path): it is set aside, the register's later
    events are delivered, and once the sale is delivered the refund is applied after it."""
    ob, core, served, m = await setup(tmp_path)
    try:
        s1 = sale("R1", 1)
        rf = refund("R1", 1, s1.key)
        later = [sale("R1", i) for i in range(2, 5)]
        await append_all(ob, [rf, *later])
        sender = Sender(ob, served.client, metrics=m, **FAST, wait_initial_s=0.05)
        async with running(sender):
            for _ in range(500):
                if core.order["R1"] == [e.key for e in later] and await ob.waiting():
                    break
                await asyncio.sleep(0.01)
            assert core.order["R1"] == [e.key for e in later]
            await ob.append(s1)
            for _ in range(500):
                if rf.key in core.order["R1"]:
                    break
                await asyncio.sleep(0.01)
        assert core.order["R1"] == [*(e.key for e in later), s1.key, rf.key]
        assert core.applications[rf.key] == 1
        assert await ob.waiting() == [] and await ob.rejected() == []
    finally:
        await served.close()
        await ob.close()


async def test_a_refund_whose_sale_never_comes_goes_to_the_queue_after_the_bound(tmp_path: Path) -> None:
    ob, core, served, m = await setup(tmp_path)
    try:
        rf = refund("R1", 1, "native:R1:1:404:")
        await append_all(ob, [rf])
        ahead = [0.0]
        sender = Sender(ob, served.client, metrics=m, **FAST, wait_initial_s=0.02, wait_for_sale_s=3600,
                        clock=lambda: time.time() + ahead[0])
        async with running(sender):
            for _ in range(500):
                rows = await ob.waiting()
                if rows and rows[0].attempts >= 2:  # tried again on its backoff, still waiting
                    break
                await asyncio.sleep(0.01)
            assert rows and rows[0].attempts >= 2
            ahead[0] = 3601
            for _ in range(500):
                if await ob.rejected():
                    break
                await asyncio.sleep(0.01)
        [queued] = await ob.rejected()
        assert queued.reason == "SALE_NEVER_ARRIVED"
        assert "sale native:R1:1:404: never arrived" in queued.last_error
        # the sale turns up after all: the operator's retry applies the refund
        await ob.append(sale("R1", 404))
        assert await ob.retry(queued.id)
        async with running(sender):
            for _ in range(500):
                if core.applications[rf.key]:
                    break
                await asyncio.sleep(0.01)
        assert core.applications[rf.key] == 1 and await ob.rejected() == []
    finally:
        await served.close()
        await ob.close()


async def test_operator_retry_is_picked_up_by_a_running_sender(tmp_path: Path) -> None:
    ob, core, served, m = await setup(tmp_path, lambda env, n: Action("reject") if n == 1 else ACK)
    try:
        await append_all(ob, [sale("R1", 1), sale("R1", 2)])
        sender = Sender(ob, served.client, metrics=m, **FAST)
        async with running(sender):
            for _ in range(300):
                if len(await ob.rejected()) == 2:
                    break
                await asyncio.sleep(0.01)
            core.rejected.clear()  # the core would now accept them
            for row in await ob.rejected():
                assert await ob.retry(row.id)
            for _ in range(300):
                if (await ob.stats()).pending == 0 and len(core.order["R1"]) == 2:
                    break
                await asyncio.sleep(0.01)
        assert core.order["R1"] == [sale("R1", 1).key, sale("R1", 2).key]
    finally:
        await served.close()
        await ob.close()


async def test_dropped_streams_resend_without_double_application(tmp_path: Path) -> None:
    def script(env: pb.EventEnvelope, attempt: int) -> Action:
        seq = env.register_seq
        if attempt == 1 and seq % 7 == 0:
            return Action("drop_before")
        if attempt == 1 and seq % 5 == 0:
            return Action("drop_after")
        return ACK

    ob, core, served, m = await setup(tmp_path, script)
    try:
        events = [sale(f"R{i % 2}", i) for i in range(80)]
        await append_all(ob, events)
        sender = Sender(ob, served.client, metrics=m, window=32, **FAST)
        assert await sender.drain(30)
        assert dict(core.order) == expected_order(events)
        assert set(core.applications.values()) == {1}
        assert max(core.seen.values()) >= 2  # resends happened, and were replays
        assert core.streams > 5
        retries = m.registry.get_sample_value("posgw_delivery_retries_total")
        assert retries is not None and retries >= 5
        assert m.registry.get_sample_value("posgw_delivered_total", {"kind": "sale"}) == 80
    finally:
        await served.close()
        await ob.close()


async def test_slow_ack_tears_down_and_resends(tmp_path: Path) -> None:
    events = [sale("R1", i) for i in range(5)]
    slow = events[1].key
    ob, core, served, m = await setup(
        tmp_path, lambda env, n: Action("noack") if env.event_id == slow and n == 1 else ACK
    )
    try:
        await append_all(ob, events)
        sender = Sender(ob, served.client, metrics=m, ack_timeout_s=0.3, **FAST)
        assert await sender.drain(10)
        assert core.order["R1"] == [e.key for e in events]
        assert core.seen[slow] == 2 and core.applications[slow] == 1
        assert core.streams == 2
    finally:
        await served.close()
        await ob.close()


async def test_retriable_rejection_backs_off_and_keeps_order(tmp_path: Path) -> None:
    events = [sale("R1", i) for i in range(8)] + [sale("R2", i) for i in range(3)]
    flaky = events[3].key
    ob, core, served, m = await setup(
        tmp_path, lambda env, n: Action("retry_reject") if env.event_id == flaky and n <= 2 else ACK
    )
    try:
        await append_all(ob, events)
        sender = Sender(ob, served.client, metrics=m, **FAST)
        assert await sender.drain(10)
        assert dict(core.order) == expected_order(events)
        assert set(core.applications.values()) == {1}
        row = next(r for r in [await ob.get(i) for i in range(1, 12)] if r is not None and r.key == flaky)
        assert row.attempts == 2  # noted per retriable rejection (last_error is cleared on delivery)
        assert m.registry.get_sample_value("posgw_delivery_retries_total") == 2
    finally:
        await served.close()
        await ob.close()


async def test_window_bounds_events_in_flight(tmp_path: Path) -> None:
    # in-process core (the gRPC fake handles a stream sequentially, so it would read only one)
    core = FakeCore(lambda env, n: Action("noack"))
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        await append_all(ob, [sale("R1", i) for i in range(40)])
        sender = Sender(ob, InProcClient(core), window=8, batch=3, ack_timeout_s=30, **FAST)
        async with running(sender):
            for _ in range(100):
                if sum(core.batch_sizes) >= 8:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            assert sum(core.batch_sizes) == 8  # events written on the stream, never answered
            assert core.batch_sizes == [3, 3, 2]  # one StreamEventsRequest per outbox read (batch=3)
    finally:
        await ob.close()


async def test_acked_events_whose_marks_wait_count_against_the_window(tmp_path: Path) -> None:
    """The core acks at once but the outbox cannot commit marks yet: the sender stops at the
    window instead of sending (and queueing marks) without bound; once the marks are committed
    the rest goes out."""
    core = FakeCore()
    ob = await Outbox.open(tmp_path / "o.db")
    gate = asyncio.Event()
    mark_acked = ob.mark_acked

    async def slow_marks(items: list[tuple[OutboxRow, bytes]]) -> None:
        await gate.wait()
        await mark_acked(items)

    ob.mark_acked = slow_marks  # type: ignore[method-assign]
    try:
        await append_all(ob, [sale("R1", i) for i in range(40)])
        sender = Sender(ob, InProcClient(core), window=8, batch=4, message_events=4, ack_timeout_s=30, **FAST)
        async with running(sender):
            for _ in range(100):
                if sum(core.batch_sizes) >= 8:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            assert sum(core.batch_sizes) == 8  # all acked, none marked: the window is full
            gate.set()
            for _ in range(500):
                if (await ob.stats()).pending == 0:
                    break
                await asyncio.sleep(0.01)
        assert core.order["R1"] == [sale("R1", i).key for i in range(40)]
        assert set(core.applications.values()) == {1}
    finally:
        await ob.close()


async def test_an_unexpected_error_in_the_marks_is_logged_and_delivery_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in marking (not a StorageError) must not kill the marker: its acks would then never
    leave the window and delivery would stop for good. The rows stay pending, are resent (the core
    replays them) and are marked later; the error is logged with its traceback."""
    core = FakeCore()
    ob = await Outbox.open(tmp_path / "o.db")
    mark_acked = ob.mark_acked
    failures = [RuntimeError("a bug")]

    async def buggy_marks(items: list[tuple[OutboxRow, bytes]]) -> None:
        if failures:
            raise failures.pop()
        await mark_acked(items)

    ob.mark_acked = buggy_marks  # type: ignore[method-assign]
    try:
        events = [sale("R1", i) for i in range(40)]
        await append_all(ob, events)
        sender = Sender(ob, InProcClient(core), window=8, batch=4, message_events=4, ack_timeout_s=30, **FAST)
        assert await sender.drain(20)
        assert (await ob.stats()).pending == 0
        assert core.order["R1"][-1] == events[-1].key and set(core.applications.values()) == {1}
        assert any(r.getMessage() == "delivery marks failed unexpectedly" and r.exc_info
                   for r in caplog.records)
    finally:
        await ob.close()


async def test_core_down_then_up(tmp_path: Path) -> None:
    metrics = Metrics()
    ob = await Outbox.open(tmp_path / "o.db", metrics=metrics)
    core = FakeCore()
    server, port = await start_server(core)
    await server.stop(0)  # the core is down; the gateway keeps the events
    client = await started_client(port, metrics)
    try:
        events = [sale("R1", i) for i in range(10)]
        await append_all(ob, events)
        sender = Sender(ob, client, metrics=metrics, **FAST)
        assert await sender.drain(0.5) is False
        assert (await ob.stats()).pending == 10
        retries = metrics.registry.get_sample_value("posgw_delivery_retries_total")
        assert retries is not None and retries >= 2
        server, _ = await start_server(core, port)
        try:
            assert await sender.drain(15)
            assert core.order["R1"] == [e.key for e in events]
        finally:
            await server.stop(0)
    finally:
        await client.close()
        await ob.close()


async def test_drain_with_stall_limit_gives_up_fast_while_the_core_is_down(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    core = FakeCore()
    server, port = await start_server(core)
    await server.stop(0)
    client = await started_client(port)
    try:
        await append_all(ob, [sale("R1", i) for i in range(3)])
        sender = Sender(ob, client, **FAST)
        began = time.monotonic()
        assert await sender.drain(10, stall_s=0.4) is False  # the daemon's stop: no 10 s wait
        assert time.monotonic() - began < 2.0
        assert (await ob.stats()).pending == 3  # kept for after the restart
    finally:
        await client.close()
        await ob.close()


async def test_resumes_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    core = FakeCore(lambda env, n: Action("noack") if env.register_seq == 6 and n == 1 else ACK)
    served = await serve(core)
    try:
        ob = await Outbox.open(path)
        events = [sale("R1", i) for i in range(10)]
        await append_all(ob, events)
        sender = Sender(ob, served.client, ack_timeout_s=30, **FAST)
        async with running(sender):
            for _ in range(300):
                if core.received >= 6:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
        # "restart": all 10 went in one StreamEventsRequest; 1..6 applied, the batch never answered
        await ob.close()
        assert len(core.order["R1"]) == 6 and core.batch_sizes == [10]
        ob = await Outbox.open(path)
        assert (await ob.stats()).pending == 10  # nothing is delivered without its ack
        assert await Sender(ob, served.client, **FAST).drain(10)
        assert core.order["R1"] == [e.key for e in events]
        assert set(core.applications.values()) == {1}
        assert [core.seen[e.key] for e in events] == [2] * 6 + [1] * 4  # 1..6 resent as replays
        await ob.close()
    finally:
        await served.close()


async def test_unsendable_event_goes_to_queue(tmp_path: Path) -> None:
    ob, core, served, _ = await setup(tmp_path)
    try:
        await ob.append(Event(EventKind.SALE, "no-receipt", "R1", T0))
        await ob.append(sale("R1", 2))
        assert await Sender(ob, served.client, **FAST).drain(10)
        (row,) = await ob.rejected()
        assert (row.key, row.reason) == ("no-receipt", "INVALID_EVENT")
        assert core.order["R1"] == [sale("R1", 2).key]
    finally:
        await served.close()
        await ob.close()


async def test_drain_with_nothing_pending_and_run_twice_refused(tmp_path: Path) -> None:
    ob, core, served, _ = await setup(tmp_path)
    try:
        sender = Sender(ob, served.client, **FAST)
        assert await sender.drain(1)
        async with running(sender):
            await asyncio.sleep(0.05)
            with pytest.raises(RuntimeError):
                await sender.run(asyncio.Event())
            await ob.append(sale("R1", 1))
            assert await sender.drain(5)  # drain while run() is active waits for it
        assert core.order["R1"] == [sale("R1", 1).key]
    finally:
        await served.close()
        await ob.close()


async def test_events_travel_in_batches_of_at_most_message_events(tmp_path: Path) -> None:
    ob, core, served, m = await setup(tmp_path)
    try:
        events = [sale(f"R{i % 4}", i) for i in range(300)]
        await append_all(ob, events)
        sender = Sender(ob, served.client, metrics=m, batch=100, window=1000, message_events=64, **FAST)
        assert await sender.drain(20)
        assert sum(core.batch_sizes) == 300 and max(core.batch_sizes) == 64
        assert len(core.batch_sizes) < 10  # not one message per event
        assert dict(core.order) == expected_order(events)
        assert max(core.seen.values()) == 1 and core.streams == 1
    finally:
        await served.close()
        await ob.close()


async def test_delivery_yields_to_tills_in_small_paced_batches(tmp_path: Path) -> None:
    # Step by step, no clock: the in-process core sees each StreamEventsRequest as it is written, and the
    # sender's pause after each busy read waits until the test lets it go on.
    core = FakeCore()
    ob = await Outbox.open(tmp_path / "o.db")
    pauses: asyncio.Queue[float] = asyncio.Queue()  # the sender entered a pause of this many seconds
    permits: asyncio.Queue[None] = asyncio.Queue()  # the test lets one pause end

    async def pause(seconds: float) -> None:
        pauses.put_nowait(seconds)
        await permits.get()

    busy = [True]
    asked: list[bool] = []

    def tills_busy() -> bool:
        asked.append(busy[0])
        return busy[0]

    try:
        events = [sale(f"R{i % 4}", i) for i in range(60)]
        await append_all(ob, events)
        sender = Sender(ob, InProcClient(core), batch=100, window=1000, busy_batch=8, yield_to=tills_busy,
                        pause=pause, **FAST)
        async with running(sender):
            for step in range(1, 4):  # tills busy: one short read, then a pause, each time
                assert await asyncio.wait_for(pauses.get(), 10) >= 0
                assert core.batch_sizes == [8] * step
                assert pauses.empty()  # nothing more is read until the pause ends
                if step == 3:
                    busy[0] = False  # the tills went quiet while the sender paused
                permits.put_nowait(None)
            assert await sender.drain(10)
        assert core.batch_sizes == [8, 8, 8, 36]  # quiet: the rest in one read, with no pause
        assert pauses.empty()
        assert dict(core.order) == expected_order(events) and max(core.seen.values()) == 1
        assert asked[:3] == [True] * 3 and False in asked[3:]
    finally:
        await ob.close()


async def test_while_tills_are_busy_a_read_that_took_all_there_was_waits_to_gather_more(
        tmp_path: Path) -> None:
    """Delivery keeping up with the tills' sales: a read that found fewer rows than it asked for
    is followed by at least ``busy_gather_s``, so the next read takes the sales of that time
    together (one message, one mark) instead of one each."""
    core = FakeCore()
    ob = await Outbox.open(tmp_path / "o.db")
    pauses: list[float] = []
    gathered = asyncio.Event()

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            await append_all(ob, [sale("R1", i) for i in range(3, 8)])  # sold meanwhile
            gathered.set()

    try:
        await append_all(ob, [sale("R1", i) for i in range(3)])
        sender = Sender(ob, InProcClient(core), batch=100, window=1000, busy_batch=8, busy_gather_s=0.25,
                        yield_to=lambda: True, pause=pause, **FAST)
        async with running(sender):
            await asyncio.wait_for(gathered.wait(), 10)
            assert await sender.drain(10)
        assert pauses[0] >= 0.25  # 3 rows of the 8 asked for: gather
        assert core.batch_sizes[:2] == [3, 5]  # what was sold during the pause went in one message
    finally:
        await ob.close()


async def test_retriable_rejection_mid_batch_keeps_the_other_registers_results(tmp_path: Path) -> None:
    events = [sale(f"R{i % 2}", i) for i in range(20)]  # R0 and R1 interleaved, one batch
    flaky = events[6].key  # R0's 4th event
    ob, core, served, m = await setup(
        tmp_path, lambda env, n: Action("retry_reject") if env.event_id == flaky and n == 1 else ACK
    )
    try:
        await append_all(ob, events)
        sender = Sender(ob, served.client, metrics=m, **FAST)
        assert await sender.drain(10)
        assert core.batch_sizes[0] == 20
        assert dict(core.order) == expected_order(events)
        assert set(core.applications.values()) == {1}
        # R1's results in the refused ack batch were marked: never resent; R0 resent from the refused one
        assert [core.seen[e.key] for e in events if e.register_id == "R1"] == [1] * 10
        assert [core.seen[e.key] for e in events if e.register_id == "R0"] == [1] * 3 + [2] * 7
        rows = {r.key: r for r in [await ob.get(i) for i in range(1, 21)] if r is not None}
        assert rows[flaky].attempts == 1  # only the cause is noted, not the registers' refused followers
        assert sum(r.attempts for r in rows.values()) == 1
        assert m.registry.get_sample_value("posgw_delivery_retries_total") == 1
    finally:
        await served.close()
        await ob.close()


class _ShortAckCall(InProcCall):
    """Answers the first StreamEventsRequest of its core with one ack missing (a broken core)."""

    async def write(self, data: bytes) -> None:
        await super().write(data)
        if self.core.streams == 1 and not self.acks.empty():
            reply = self.acks.get_nowait()
            del reply.acks[-1]
            self.acks.put_nowait(reply)


async def test_an_ack_batch_that_does_not_match_its_event_batch_fails_the_stream(tmp_path: Path) -> None:
    core = FakeCore()
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        events = [sale("R1", i) for i in range(5)]
        await append_all(ob, events)

        sender = Sender(ob, InProcClient(core, call=_ShortAckCall), **FAST)
        assert await sender.drain(10)
        assert core.streams == 2
        assert [core.seen[e.key] for e in events] == [2] * 5  # nothing of the bad answer was trusted
        assert set(core.applications.values()) == {1}
    finally:
        await ob.close()


class _Down(InProcCall):
    """A stream to a core that is down: every write fails with UNAVAILABLE."""

    def __init__(self, core: FakeCore) -> None:
        super().__init__(core)
        self.broken = True


class _Unimplemented(InProcCall):
    """A core without StreamEvents (an old version): a status no retry cures."""

    async def write(self, data: bytes) -> None:
        raise rpc_error(grpc.StatusCode.UNIMPLEMENTED, "unknown method StreamEvents")


@pytest.mark.parametrize(("call", "level", "slow"),
                         [(_Down, "WARNING", False), (_Unimplemented, "ERROR", True)])
async def test_the_errors_retriable_alone_chooses_the_retry_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, call: type[InProcCall], level: str, slow: bool,
) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        await ob.append(sale("R1", 1))
        sender = Sender(ob, InProcClient(FakeCore(), call=call), **{**FAST, "backoff_max_s": 30.0})
        with caplog.at_level("WARNING", logger="posgw.sender"):
            assert await sender.drain(0.3) is False
        first = next(r for r in caplog.records if r.name == "posgw.sender")
        assert first.levelname == level
        assert (first.retry_in_s == 30.0) is slow  # type: ignore[attr-defined]  # not retriable: the slow lane
        assert (await ob.stats()).pending == 1  # never abandoned
    finally:
        await ob.close()


async def test_failing_streams_open_the_breaker_the_calc_path_shares(tmp_path: Path) -> None:
    metrics = Metrics()
    ob = await Outbox.open(tmp_path / "o.db")
    core = FakeCore()
    client = InProcClient(core, call=_Down, metrics=metrics)
    try:
        await append_all(ob, [sale("R1", i) for i in range(3)])
        sender = Sender(ob, client, metrics=metrics, **FAST)
        async with running(sender):
            for _ in range(1000):
                if metrics.registry.get_sample_value(
                        "posgw_core_calls_total", {"method": "StreamEvents", "code": "BREAKER_OPEN"}):
                    break
                await asyncio.sleep(0.01)
        assert metrics.registry.get_sample_value(
            "posgw_core_calls_total", {"method": "StreamEvents", "code": "UNAVAILABLE"}) >= 5
        assert metrics.registry.get_sample_value(
            "posgw_core_calls_total", {"method": "StreamEvents", "code": "BREAKER_OPEN"}) >= 1
        client.call = InProcCall  # the core is back: after the breaker's reset, delivery resumes
        assert await sender.drain(10)
        assert client.breaker.state == "closed"
        assert core.order["R1"] == [sale("R1", i).key for i in range(3)]
    finally:
        await ob.close()


async def test_delivered_sales_look_for_waiting_rows_only_while_some_may_exist(tmp_path: Path) -> None:
    # one event in flight at a time: a look at the waiting rows per delivered sale would be 200 looks
    core = FakeCore()
    ob = await Outbox.open(tmp_path / "o.db")
    looks = 0
    read_waiting = ob.waiting

    async def counted(limit: int = 10_000) -> list[OutboxRow]:
        nonlocal looks
        looks += 1
        return await read_waiting(limit)

    ob.waiting = counted  # type: ignore[method-assign]
    try:
        await asyncio.gather(*(ob.append(sale("R1", i)) for i in range(200)))
        sender = Sender(ob, InProcClient(core), window=1, message_events=1, wait_initial_s=60.0, **FAST)
        assert await sender.drain(30)
        assert len(core.order["R1"]) == 200
        assert looks < 50  # the first look, then one a second at most (none is waiting)
    finally:
        await ob.close()


async def test_with_nothing_waiting_the_waiting_rows_are_not_polled(tmp_path: Path) -> None:
    """No waiting row: the waiting loop sleeps until a row is set aside (no look per
    wait_initial_s); a refund set aside later is still looked at and woken by its sale."""
    core = FakeCore()
    ob = await Outbox.open(tmp_path / "o.db")
    looks = 0
    read_waiting = ob.waiting

    async def counted(limit: int = 10_000) -> list[OutboxRow]:
        nonlocal looks
        looks += 1
        return await read_waiting(limit)

    ob.waiting = counted  # type: ignore[method-assign]
    try:
        await ob.append(sale("R1", 1))
        sender = Sender(ob, InProcClient(core), wait_initial_s=0.01, **FAST)
        async with running(sender):
            for _ in range(500):  # delivered, and the first look at start (none waiting): then it sleeps
                if looks and core.applications[sale("R1", 1).key]:
                    break
                await asyncio.sleep(0.01)
            before = looks
            await asyncio.sleep(0.2)  # twenty of the old one-per-wait_initial_s looks
            assert looks == before == 1
            rf = refund("R1", 2, sale("R1", 2).key)  # set aside: the loop looks again
            await ob.append(rf)
            for _ in range(500):
                if await ob.waiting():
                    break
                await asyncio.sleep(0.01)
            await ob.append(sale("R1", 2))  # its sale: the refund is woken and applied after it
            for _ in range(500):
                if core.applications[rf.key]:
                    break
                await asyncio.sleep(0.01)
        assert core.order["R1"] == [sale("R1", 1).key, sale("R1", 2).key, rf.key]
        assert looks > before
    finally:
        await ob.close()
