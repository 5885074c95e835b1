"""gateway.outbox: durability, group commit, duplicates, order, states, corruption, storage errors."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from gateway import outbox as outbox_module
from gateway.convert import envelope_body
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.errors import StorageError
from gateway.metrics import Metrics
from gateway.outbox import ConflictLimit, Outbox
from gateway.outbox_db import SCHEMA_VERSION
from gateway.receipt import CustomerId, Event, EventKind, IdKind, Payment
from gateway.sender import Sender
from tests.gateway.fake_core import FakeCore, InProcClient
from tests.gateway.outbox_fixtures import FakeClock, refund, sale, write_schema_2

ROOT = Path(__file__).resolve().parents[2]


async def test_pragmas_wal_and_synchronous_full(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        p = await ob.pragmas()
        assert p["journal_mode"] == "wal"
        assert p["synchronous"] == 2  # FULL
    finally:
        await ob.close()


async def test_append_is_durable_and_visible_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = await Outbox.open(path)
    ev = sale("R1", 1)
    assert await ob.append(ev) is True
    # another connection (another process would see the same) sees the committed row at once
    with sqlite3.connect(path) as raw:
        got = raw.execute("select key, state, register_seq from events").fetchall()
        assert got == [(ev.key, "pending", 1)]
    await ob.close()
    ob = await Outbox.open(path)
    try:
        rows = await ob.next_batch(10)
        assert [(r.key, r.event, r.state, r.register_seq) for r in rows] == [(ev.key, ev, "pending", 1)]
    finally:
        await ob.close()


async def test_duplicates_change_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics()
    ob = await Outbox.open(tmp_path / "o.db", metrics=m)
    try:
        ev = sale("R1", 1)
        assert await ob.append(ev) is True
        assert await ob.append(ev) is False
        other = sale("R1", 1, amount=777)  # same key, different content
        assert other.key == ev.key
        with caplog.at_level(logging.WARNING, logger="posgw.outbox"):
            assert await ob.append(other) is False
        [conflict] = [r for r in caplog.records if r.message.startswith("duplicate key with other content")]
        assert (conflict.levelname, conflict.__dict__["key"], conflict.__dict__["register"]) == (
            "WARNING", ev.key, "R1")
        assert "operator queue" in conflict.__dict__["action"]
        assert m.registry.get_sample_value("posgw_outbox_events_total", {"outcome": "conflict"}) == 1
        rows = await ob.next_batch(10)
        assert len(rows) == 1 and rows[0].event == ev
        # the conflicting copy is not dropped: a rejected row in the operator queue
        [queued] = await ob.rejected()
        assert (queued.key, queued.reason) == (f"{ev.key}:conflict:1", "RECEIPT_CONFLICT")
        assert queued.event == other
        assert f"row {rows[0].id}" in queued.last_error and "=777" in queued.last_error
        assert m.registry.get_sample_value("posgw_outbox_events_total", {"outcome": "duplicate"}) == 2
        assert m.registry.get_sample_value("posgw_outbox_events_total", {"outcome": "stored"}) == 1
        # a duplicate of a delivered row is still a duplicate
        await ob.mark_delivered(rows[0].id, "{}")
        assert await ob.append(ev) is False
        assert await ob.next_batch(10) == []
    finally:
        await ob.close()


async def test_a_copy_from_another_path_is_a_quiet_duplicate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Evotor's cloud copy of a plugin receipt: no cashier, no payments, the time to the second in
    UTC. Same goods, customer and points: a routine duplicate. A later time is a reused key."""
    m = Metrics()
    ob = await Outbox.open(tmp_path / "o.db", metrics=m)
    try:
        plugin = sale("R1", 1)
        assert plugin.receipt is not None
        receipt = replace(plugin.receipt, cashier_id="01-2", payments=(Payment("card", 10000),),
                          occurred_at=plugin.occurred_at.astimezone(timezone(timedelta(hours=3)))
                          + timedelta(milliseconds=821))
        plugin = replace(plugin, receipt=receipt, occurred_at=receipt.occurred_at, cashier_id="01-2")
        cloud = sale("R1", 1)
        assert await ob.append(plugin) is True
        with caplog.at_level(logging.DEBUG, logger="posgw.outbox"):
            assert await ob.append(cloud) is False
            assert [(r.levelname, r.message, r.__dict__["key"]) for r in caplog.records] == [
                ("DEBUG", "duplicate is a copy of the stored event", cloud.key)]
            late = replace(cloud, occurred_at=cloud.occurred_at + timedelta(hours=1))
            assert await ob.append(late) is False
            assert caplog.records[-1].message.startswith("duplicate key with other content")
            assert caplog.records[-1].levelname == "WARNING"
        assert m.registry.get_sample_value("posgw_outbox_events_total", {"outcome": "conflict"}) == 1
        assert [r.event for r in await ob.next_batch(10)] == [plugin]
    finally:
        await ob.close()


async def test_group_commit_many_concurrent_appends(tmp_path: Path) -> None:
    m = Metrics()
    ob = await Outbox.open(tmp_path / "o.db", metrics=m)
    try:
        events = [sale(f"R{i % 4}", i) for i in range(200)]
        results = await asyncio.gather(*(ob.append(e) for e in events))
        assert all(results)
        commits = m.registry.get_sample_value("posgw_outbox_commits_total")
        assert commits is not None and commits <= 20, commits  # one writer, batches of what waits
        assert ob.rows_committed == 200
        assert m.registry.get_sample_value("posgw_outbox_rows_per_commit_sum") == 200
        rows = await ob.next_batch(1000)
        assert len(rows) == 200
        # per register: seq 1..n, in append order
        for reg in ("R0", "R1", "R2", "R3"):
            mine = [r for r in rows if r.register_id == reg]
            assert [r.register_seq for r in mine] == list(range(1, 51))
            assert [r.key for r in mine] == [e.key for e in events if e.register_id == reg]
    finally:
        await ob.close()


async def test_next_batch_pages_in_append_order(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        for i in range(10):
            await ob.append(sale("A" if i % 3 else "B", i))
        first = await ob.next_batch(4)
        rest = await ob.next_batch(100, after_id=first[-1].id)
        keys = [r.key for r in first + rest]
        assert keys == [sale("A" if i % 3 else "B", i).key for i in range(10)]
        assert len(first) == 4 and len(rest) == 6
    finally:
        await ob.close()


async def test_next_batch_rows_equal_the_whole_stored_rows(tmp_path: Path) -> None:
    """next_batch reads only the columns delivery needs and fills the rest as a pending row has
    them: every field equals the row read whole (a retried and a woken row included: both had a
    reason, a noted retry keeps its last_error and attempts)."""
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        for i in range(4):
            await ob.append(sale("A", i))
        r1, r2, r3, r4 = await ob.next_batch(10)
        await ob.note_retry(r1.id, "UNAVAILABLE: core down")
        await ob.mark_rejected(r2.id, "INVALID_EVENT", "bad")
        assert await ob.retry(r2.id)
        assert await ob.mark_waiting(r3.id, 1, "SALE_NOT_YET_KNOWN", "waiting")
        assert await ob.wake([r3.id]) == 1
        rows = await ob.next_batch(10)
        assert [r.id for r in rows] == [r1.id, r2.id, r3.id, r4.id]
        assert rows[0].attempts == 1 and rows[0].last_error == "UNAVAILABLE: core down"
        for row in rows:
            whole = await ob.get(row.id)
            assert whole is not None
            assert row == whole and row.envelope == whole.envelope and row.event == whole.event
            assert type(row.state) is type(whole.state)
    finally:
        await ob.close()


async def test_states_and_operator_transitions(tmp_path: Path) -> None:
    m = Metrics()
    ob = await Outbox.open(tmp_path / "o.db", metrics=m)
    try:
        s1, s2 = sale("R1", 1), sale("R1", 2)
        await ob.append(s1)
        await ob.append(s2)
        await ob.append(refund("R1", 1, s1.key))
        r1, r2, r3 = await ob.next_batch(10)
        await ob.mark_delivered(r1.id, '{"commit": {}}')
        await ob.note_retry(r2.id, "UNAVAILABLE: core down")
        await ob.mark_rejected(r2.id, "INSUFFICIENT_POINTS", "points already spent")
        assert [r.id for r in await ob.next_batch(10)] == [r3.id]
        got = await ob.get(r1.id)
        assert got is not None and got.state == "delivered" and got.result_json == '{"commit": {}}'
        (rej,) = await ob.rejected()
        assert (rej.id, rej.state, rej.reason, rej.last_error, rej.attempts) == (
            r2.id, "rejected", "INSUFFICIENT_POINTS", "points already spent", 1)
        st = await ob.stats()
        assert (st.pending, st.rejected) == (1, 1)
        assert m.registry.get_sample_value("posgw_operator_queue") == 1
        # only rejected rows move on operator actions
        assert await ob.retry(r1.id) is False
        assert await ob.resolve(r3.id, "x") is False
        assert await ob.retry(r2.id) is True
        assert [r.id for r in await ob.next_batch(10)] == [r2.id, r3.id]
        assert await ob.rejected() == []
        await ob.mark_rejected(r2.id, "INSUFFICIENT_POINTS", "again")
        assert await ob.resolve(r2.id, "customer paid cash") is True
        got = await ob.get(r2.id)
        assert got is not None and (got.state, got.note) == ("resolved", "customer paid cash")
        assert await ob.retry(r2.id) is False  # resolved is final
        assert await ob.get(9999) is None
        # a delivered row cannot be rejected afterwards (marks apply to pending rows only)
        await ob.mark_rejected(r1.id, "X", "y")
        got = await ob.get(r1.id)
        assert got is not None and got.state == "delivered"
    finally:
        await ob.close()


async def test_mark_delivered_many_is_one_commit(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        for i in range(30):
            await ob.append(sale("R", i))
        rows = await ob.next_batch(100)
        before = ob.commits
        await ob.mark_delivered_many([(r.id, "{}") for r in rows])
        assert ob.commits - before == 1
        assert (await ob.stats()).pending == 0
    finally:
        await ob.close()


async def test_corrupt_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database, it is garbage" * 200)
    with pytest.raises(StorageError):  # the CLI's mode: never alter a file it cannot read
        await Outbox.open(path, recover=False)
    assert path.read_bytes().startswith(b"this is not")
    with caplog.at_level(logging.ERROR, logger="posgw.outbox"):
        ob = await Outbox.open(path)
    try:
        st = await ob.stats()
        assert st.moved_aside and Path(st.moved_aside).name.startswith("o.db.corrupt-")
        assert Path(st.moved_aside).read_bytes().startswith(b"this is not")  # noqa: ASYNC240
        [moved] = [r for r in caplog.records
                   if r.message == "outbox file damaged: readable rows salvaged, the file moved aside"]
        assert (moved.__dict__["path"], moved.__dict__["moved_to"]) == (str(path), st.moved_aside)
        [report] = st.salvage  # nothing was readable: reported, and the count is a lower bound
        assert (report.salvaged, report.complete, report.moved_to) == (0, False, st.moved_aside)
        assert await ob.append(sale("R1", 1)) is True
        assert st.writable
    finally:
        await ob.close()
    ob = await Outbox.open(path)  # the fresh file opens cleanly next time: no crash loop
    try:
        assert (await ob.stats()).moved_aside == ""
        assert len((await ob.stats()).salvage) == 1  # still degraded: nobody acknowledged it
        assert len(await ob.next_batch(10)) == 1
    finally:
        await ob.close()


async def test_truncated_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = await Outbox.open(path)
    for i in range(50):
        await ob.append(sale("R1", i))
    await ob.close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * 5000 + data[5100:])  # smash pages past the header
    ob = await Outbox.open(path)
    try:
        assert (await ob.stats()).moved_aside
    finally:
        await ob.close()


async def test_open_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no outbox"):
        await Outbox.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


async def test_storage_error_when_database_locked_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    m = Metrics()
    ob = await Outbox.open(path, metrics=m, busy_timeout_ms=50)
    try:
        await ob.append(sale("R1", 1))
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: our writes fail
        locker.execute("insert into registers values ('zz', 1)")
        try:
            results = await asyncio.gather(*(ob.append(sale("R1", i)) for i in range(2, 6)),
                                           return_exceptions=True)
            assert all(isinstance(r, StorageError) for r in results), results
            st = await ob.stats()
            assert not st.writable and "locked" in st.last_storage_error
            assert m.registry.get_sample_value("posgw_outbox_events_total", {"outcome": "failed"}) == 4
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert [r.key for r in await ob.next_batch(10)] == [sale("R1", 1).key]  # nothing of the batch
        assert await ob.append(sale("R1", 2)) is True
        st = await ob.stats()
        assert st.writable and st.pending == 2
        assert [r.register_seq for r in await ob.next_batch(10)] == [1, 2]  # no gap from the failed batch
    finally:
        await ob.close()


async def test_storage_error_when_directory_cannot_exist(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(StorageError, match="directory"):
        await Outbox.open(blocker / "o.db")
    assert blocker.read_text().startswith("a file")


async def test_backpressure_bounded_queue(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = await Outbox.open(path, queue_size=2, max_batch=2, busy_timeout_ms=5000)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    tasks = [asyncio.create_task(ob.append(sale("R1", i))) for i in range(10)]
    try:
        for _ in range(50):
            await asyncio.sleep(0.01)
            if ob._slots.locked():
                break
        # queue_size ops accepted (queued or in the blocked write); the rest wait in append, not in memory
        assert ob._slots.locked() and ob._ops.qsize() <= 2
        assert not any(t.done() for t in tasks)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert all(await asyncio.gather(*tasks))
    assert (await ob.stats()).pending == 10
    await ob.close()


async def test_stuck_needs_age_and_no_progress(tmp_path: Path) -> None:
    clock = FakeClock()
    ob = await Outbox.open(tmp_path / "o.db", stuck_after_s=300, clock=clock)
    try:
        await ob.append(sale("R1", 1))
        await ob.append(sale("R1", 2))
        clock.advance(200)
        st = await ob.stats()
        assert st.pending == 2 and st.oldest_pending_age_s == 200 and not st.stuck
        clock.advance(101)
        assert (await ob.stats()).stuck
        first = (await ob.next_batch(1))[0]
        await ob.mark_delivered(first.id, "{}")  # progress: not stuck although the rest is old
        assert not (await ob.stats()).stuck
        clock.advance(301)
        assert (await ob.stats()).stuck
    finally:
        await ob.close()


async def test_stuck_survives_a_restart(tmp_path: Path) -> None:
    """A gateway restarted (say, crash-looping) with an old backlog is still stuck: the last
    progress comes from the file, not from when the process started."""
    clock = FakeClock()
    path = tmp_path / "o.db"
    ob = await Outbox.open(path, stuck_after_s=300, clock=clock)
    await ob.append(sale("R1", 1))
    (first,) = await ob.next_batch(1)
    await ob.mark_delivered(first.id, "{}")
    clock.advance(10)
    await ob.append(sale("R1", 2))
    await ob.close()
    clock.advance(500)
    ob = await Outbox.open(path, stuck_after_s=300, clock=clock)
    try:
        assert (await ob.stats()).stuck  # waiting 500 s, last delivery 510 s ago
    finally:
        await ob.close()
    fresh = await Outbox.open(tmp_path / "fresh.db", stuck_after_s=300, clock=clock)
    try:
        await fresh.append(sale("R1", 1))
        assert not (await fresh.stats()).stuck  # nothing delivered yet, but nothing waits long
        clock.advance(301)
        assert (await fresh.stats()).stuck  # never delivered and waiting too long
    finally:
        await fresh.close()


async def test_delivered_rows_pruned_and_sequences_stay_monotonic(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "o.db"
    ob = await Outbox.open(path, keep_delivered_s=86400, clock=clock)
    try:
        await ob.append(sale("R1", 1))
        (row,) = await ob.next_batch(10)
        await ob.mark_delivered(row.id, "{}")
        clock.advance(2 * 86400)
        await ob.append(sale("R1", 2))  # this write prunes the old delivered row
        with sqlite3.connect(path) as raw:
            assert raw.execute("select register_seq, state from events").fetchall() == [(2, "pending")]
    finally:
        await ob.close()


async def test_unreadable_payload_goes_to_operator_queue(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = await Outbox.open(path)
    try:
        await ob.append(sale("R1", 1))
        await ob.append(sale("R1", 2))
        with sqlite3.connect(path) as raw:  # the payload unreadable, and no envelope to send instead
            raw.execute("update events set payload = x'7b7d', envelope = x'' where register_seq = 1")
        rows = await ob.next_batch(10)
        assert [r.register_seq for r in rows] == [2]
        (rej,) = await ob.rejected()
        assert rej.reason == "UNREADABLE_PAYLOAD" and rej.register_seq == 1
        assert dict(rej.event.extra)["payload_error"]
    finally:
        await ob.close()


# not protobuf; an envelope with no body; a body that does not parse; one cut short (the last two
# begin like a sound envelope: next_batch's check of the whole read must find them too)
@pytest.mark.parametrize("stored", ["x'ff'", "x'0a0141'", "x'2203ffffff'", "x'2210'"])
async def test_an_unreadable_stored_envelope_goes_to_operator_queue(tmp_path: Path, stored: str) -> None:
    path = tmp_path / "o.db"
    ob = await Outbox.open(path)
    try:
        await ob.append(sale("R1", 1))
        await ob.append(sale("R1", 2))
        with sqlite3.connect(path) as raw:
            raw.execute(f"update events set envelope = {stored} where register_seq = 1")
        assert [r.register_seq for r in await ob.next_batch(10)] == [2]
        (rej,) = await ob.rejected()
        assert (rej.reason, rej.register_seq) == ("UNREADABLE_PAYLOAD", 1)
        assert "envelope" in rej.last_error
        assert rej.event == sale("R1", 1)  # the payload still shows what it was
    finally:
        await ob.close()


async def test_rows_carry_the_envelope_stored_at_append_and_decode_the_event_on_demand(
    tmp_path: Path,
) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        ev = sale("R1", 1)
        await ob.append(ev)
        (row,) = await ob.next_batch(10)
        assert row.envelope == envelope_body(ev)
        assert "event" not in row.__dict__  # nothing decoded to hand the row to the sender
        assert row.event == ev
    finally:
        await ob.close()


async def test_a_merge_replaces_the_stored_envelope_with_the_payload(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        plugin, cloud = _evotor_copies()
        await ob.append(cloud)
        assert await ob.append(plugin) is False  # merged: the plugin's copy adds the customer
        (row,) = await ob.next_batch(10)
        assert row.event.receipt is not None and row.event.receipt.customer is not None
        assert row.envelope == envelope_body(row.event)
    finally:
        await ob.close()


async def test_a_schema_2_backlog_is_migrated_at_open_and_delivered(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    backlog = [sale(f"R{i % 3}", i) for i in range(60)]
    waiting = refund("R0", 1, "gone-sale")
    unreadable = sale("R1", 1000)
    rows = [(sale("R0", 9000), "delivered", '{"commit":{"operation_id":"op-old"}}')]
    rows += [(ev, "pending", "") for ev in backlog] + [(waiting, "waiting", ""), (unreadable, "pending", "")]
    write_schema_2(path, rows, now=time.time())  # (a delivered row older than a week is pruned)
    with sqlite3.connect(path) as raw:
        raw.execute("update events set payload = x'7b7d' where key = ?", (unreadable.key,))
    ob = await Outbox.open(path)
    try:
        with sqlite3.connect(path) as raw:
            assert raw.execute("pragma user_version").fetchone() == (3,)
            built = dict(raw.execute("select key, envelope from events where envelope != x''").fetchall())
        assert built == {ev.key: envelope_body(ev) for ev in [*backlog, waiting]}  # not the delivered one
        pending = await ob.next_batch(1000)
        assert [r.key for r in pending] == [ev.key for ev in backlog]  # the unreadable one went to the queue
        (rej,) = await ob.rejected()
        assert (rej.key, rej.reason) == (unreadable.key, "UNREADABLE_PAYLOAD")
        core = FakeCore()
        assert await Sender(ob, InProcClient(core), backoff_initial_s=0.01, backoff_max_s=0.05,
                            idle_poll_s=0.05).drain(30)
        for reg in ("R0", "R1", "R2"):  # every event once, in its register's order
            assert core.order[reg] == [ev.key for ev in backlog if ev.register_id == reg]
        assert set(core.applications.values()) == {1}
        delivered = await ob.get(1)
        assert delivered is not None and delivered.result_json == '{"commit":{"operation_id":"op-old"}}'
        assert (await ob.append(sale("R0", 9001))) is True  # sequences go on after the migrated ones
        (new,) = await ob.next_batch(10)
        assert new.register_seq == 1 + sum(1 for e, _, _ in rows if e.register_id == "R0")
    finally:
        await ob.close()


async def test_closed_outbox_refuses(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    await ob.close()
    await ob.close()  # idempotent
    with pytest.raises(StorageError):
        await ob.append(sale("R1", 1))
    with pytest.raises(StorageError):
        await ob.stats()


async def test_wait_pending_wakes_on_append(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        waiter = asyncio.create_task(ob.wait_pending(30))
        await asyncio.sleep(0)
        assert not waiter.done()
        await ob.append(sale("R1", 1))
        await asyncio.wait_for(waiter, 5)
    finally:
        await ob.close()


CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from gateway.outbox import Outbox
    from tests.gateway.outbox_fixtures import sale

    async def main() -> None:
        ob = await Outbox.open(Path(sys.argv[1]))
        acked = 0

        async def one(i: int) -> None:
            nonlocal acked
            await ob.append(sale(f"R{i % 3}", i))
            sys.stdout.write("%d\\n" % i)
            sys.stdout.flush()
            acked += 1
            if acked == 40:
                os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush, no cleanup

        await asyncio.gather(*(one(i) for i in range(300)))

    asyncio.run(main())
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
async def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    acked = {int(x) for x in out.decode().split()}
    assert len(acked) >= 40
    ob = await Outbox.open(path)
    try:
        stored = {r.key for r in await ob.next_batch(1000)}
        assert {sale(f"R{i % 3}", i).key for i in acked} <= stored
        assert (await ob.stats()).moved_aside == ""  # a killed writer leaves a sound file
    finally:
        await ob.close()


async def test_driver_state_is_durable_per_driver_and_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = await Outbox.open(path)
    try:
        await ob.put_state("poster", "tx:1", "sale-a")
        await ob.put_state("evotor", "tx:1", "other driver, same key")
        await ob.put_state("poster", "tx:1", "sale-b")
        assert await ob.get_state("poster", "missing") is None
        with pytest.raises(ValueError, match="keep_s"):
            await ob.put_state("poster", "tx:2", "x", keep_s=0)
    finally:
        await ob.close()
    ob = await Outbox.open(path)
    try:
        assert await ob.get_state("poster", "tx:1") == "sale-b"
        assert await ob.get_state("evotor", "tx:1") == "other driver, same key"
        assert await ob.get_state("poster", "tx:2") is None  # the refused put stored nothing
    finally:
        await ob.close()


async def test_driver_state_expires_then_is_pruned(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "o.db"
    ob = await Outbox.open(path, clock=clock)
    try:
        await ob.put_state("poster", "short", "a", keep_s=60)
        await ob.put_state("poster", "forever", "b")
        clock.advance(59)
        assert await ob.get_state("poster", "short") == "a"
        clock.advance(2)
        assert await ob.get_state("poster", "short") is None  # expired, even before the prune
        clock.advance(3600)
        await ob.append(sale("R1", 1))  # a write after an hour prunes
        with sqlite3.connect(path) as raw:
            assert raw.execute("select key from driver_state").fetchall() == [("forever",)]
        assert await ob.get_state("poster", "forever") == "b"
    finally:
        await ob.close()


async def test_state_keys_lists_a_drivers_live_keys_holding_a_value(tmp_path: Path) -> None:
    clock = FakeClock()
    ob = await Outbox.open(tmp_path / "o.db", clock=clock)
    try:
        await ob.put_state("_calc", "short", "t1", keep_s=60)
        await ob.put_state("_calc", "long", "t2", keep_s=600)
        await ob.put_state("_calc", "forgotten", "", keep_s=600)
        await ob.put_state("poster", "other", "x")
        now = clock()
        assert sorted(await ob.state_keys("_calc", 10)) == [("long", now + 600), ("short", now + 60)]
        assert len(await ob.state_keys("_calc", 1)) == 1  # at most the limit... (the caller asks limit + 1)
        clock.advance(61)
        assert await ob.state_keys("_calc", 10) == [("long", now + 600)]
        assert await ob.state_keys("poster", 10) == [("other", None)]
    finally:
        await ob.close()


async def test_version_1_file_gains_driver_state(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = await Outbox.open(path)
    await ob.append(sale("R1", 1))
    await ob.close()
    with sqlite3.connect(path) as raw:  # what posgw wrote before driver_state existed
        raw.execute("drop table driver_state")
        raw.execute("pragma user_version = 1")
    ob = await Outbox.open(path)
    try:
        assert [r.key for r in await ob.next_batch(10)] == [sale("R1", 1).key]
        await ob.put_state("poster", "k", "v")
        assert await ob.get_state("poster", "k") == "v"
    finally:
        await ob.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("pragma user_version").fetchone() == (SCHEMA_VERSION,)


# ------------------------------------------------------------------ copies of one receipt


def _evotor_copies() -> tuple[Event, Event]:
    """Evotor's plugin copy (customer, points, cashier) and its cloud copy (fiscal sign, payments,
    no customer) of one receipt: one key, same goods."""
    base = sale("R1", 1, driver="evotor")
    assert base.receipt is not None
    plugin_r = replace(base.receipt, customer=CustomerId(IdKind.PHONE, "+79160000101"), redeem_points=0,
                       cashier_id="01-2")
    cloud_r = replace(base.receipt, fiscal_sign="FS-123", payments=(Payment("card", 10000),))
    return replace(base, receipt=plugin_r, cashier_id="01-2"), replace(base, receipt=cloud_r)


@pytest.mark.parametrize("first", ["plugin", "cloud"])
async def test_copies_before_delivery_are_merged_whichever_comes_first(tmp_path: Path, first: str) -> None:
    plugin, cloud = _evotor_copies()
    a, b = (plugin, cloud) if first == "plugin" else (cloud, plugin)
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        assert await ob.append(a) is True
        assert await ob.append(b) is False
        assert await ob.append(b) is False  # a third copy adds nothing more
        [row] = await ob.next_batch(10)
        assert row.register_seq == 1 and row.key == plugin.key
        assert row.event.receipt is not None
        assert row.event.receipt.customer == CustomerId(IdKind.PHONE, "+79160000101")
        assert row.event.receipt.fiscal_sign == "FS-123"
        assert row.event.receipt.payments == (Payment("card", 10000),)
        assert row.event.receipt.cashier_id == "01-2"
        assert await ob.rejected() == []
    finally:
        await ob.close()


async def test_a_copy_adding_the_customer_after_delivery_queues_one_correction(tmp_path: Path) -> None:
    plugin, cloud = _evotor_copies()
    m = Metrics()
    ob = await Outbox.open(tmp_path / "o.db", metrics=m)
    try:
        assert await ob.append(cloud) is True
        [row] = await ob.next_batch(10)
        await ob.mark_delivered(row.id, "{}")
        assert await ob.append(plugin) is False
        assert await ob.append(plugin) is False  # the same late copy again: still one correction
        [fix] = await ob.next_batch(10)
        assert (fix.key, fix.kind, fix.register_seq) == (f"{cloud.key}:correction:1", "correction", 2)
        assert fix.event.sale_key == cloud.key and fix.event.kind == EventKind.CORRECTION
        assert fix.event.receipt is not None and fix.event.receipt.customer is not None
        assert m.registry.get_sample_value("posgw_outbox_events_total", {"outcome": "correction"}) == 1
        # the cloud copy arriving after the delivered plugin copy adds fiscal data only: nothing to do
        await ob.mark_delivered(fix.id, "{}")
        assert await ob.append(cloud) is False
        assert await ob.next_batch(10) == [] and await ob.rejected() == []
    finally:
        await ob.close()


async def test_a_late_copy_naming_another_customer_than_the_correction_is_a_conflict(tmp_path: Path) -> None:
    """Delivered without a customer; a copy naming P queued the correction attaching P; a later
    copy naming Q builds the same correction key: not "the same copy again" but a conflict in the
    operator queue (naming the correction and P). P's copy again is still a copy."""
    plugin, cloud = _evotor_copies()
    assert plugin.receipt is not None
    someone_else = CustomerId(IdKind.PHONE, "+79160000202")
    other = replace(plugin, receipt=replace(plugin.receipt, customer=someone_else))
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        await ob.append(cloud)
        [row] = await ob.next_batch(10)
        await ob.mark_delivered(row.id, "{}")
        assert await ob.append(plugin) is False  # the correction attaching P
        assert await ob.append(other) is False  # Q: stored in the operator queue
        [queued] = await ob.rejected()
        assert (queued.key, queued.reason) == (f"{cloud.key}:conflict:1", "RECEIPT_CONFLICT")
        assert queued.event == other
        assert f"the correction {cloud.key}:correction:1" in queued.last_error
        assert "phone:+79160000101" in queued.last_error and "phone:+79160000202" in queued.last_error
        assert await ob.append(plugin) is False and await ob.append(other) is False  # resends: no new rows
        [fix] = await ob.next_batch(10)
        assert fix.key == f"{cloud.key}:correction:1"
        assert fix.event.receipt is not None and fix.event.receipt.customer == plugin.receipt.customer
        assert [r.key for r in await ob.rejected()] == [queued.key]
    finally:
        await ob.close()


async def test_a_late_copy_spending_points_is_a_conflict_not_a_correction(tmp_path: Path) -> None:
    plugin, cloud = _evotor_copies()
    assert plugin.receipt is not None
    greedy = replace(plugin, receipt=replace(plugin.receipt, redeem_points=5))
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        await ob.append(cloud)
        [row] = await ob.next_batch(10)
        await ob.mark_delivered(row.id, "{}")
        assert await ob.append(greedy) is False
        [queued] = await ob.rejected()
        assert queued.key == f"{cloud.key}:conflict:1" and "spends points" in queued.last_error
        assert await ob.next_batch(10) == []
    finally:
        await ob.close()


async def test_an_ack_for_content_merged_meanwhile_delivers_what_was_sent(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """mark_acked: the row was read for sending, then a copy merged into it; the ack is for the
    content sent. The row keeps that content, delivered; the merge becomes what a later copy
    becomes: a conflict when it spends points (a correction: tests/gateway/test_sender_copies.py)."""
    plugin, cloud = _evotor_copies()
    assert plugin.receipt is not None
    greedy = replace(plugin, receipt=replace(plugin.receipt, redeem_points=5))
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        await ob.append(cloud)
        [sent] = await ob.next_batch(10)
        assert await ob.append(greedy) is False  # merged: the row is pending, not acked yet
        [merged] = await ob.next_batch(10)
        assert merged.payload != sent.payload
        ack = pb.EventAck(event_id=sent.key, commit=pb.CommitResponse(operation_id="op-1"))
        with caplog.at_level(logging.WARNING, logger="posgw.outbox"):
            await ob.mark_acked([(sent, ack.SerializeToString())])
        got = await ob.get(sent.id)
        assert got is not None and got.state == "delivered"
        assert (got.payload, got.envelope) == (sent.payload, sent.envelope)
        [queued] = await ob.rejected()
        assert queued.key == f"{cloud.key}:conflict:1" and "spends points" in queued.last_error
        assert queued.event.receipt is not None and queued.event.receipt.redeem_points == 5
        assert any("on its way to the core" in r.getMessage() for r in caplog.records)
        # an ack for a row nobody changed: delivered as it is, nothing else happens
        await ob.append(sale("R2", 1))
        [other] = await ob.next_batch(10)
        await ob.mark_acked([(other, ack.SerializeToString())])
        again = await ob.get(other.id)
        assert again is not None and again.state == "delivered"
        assert len(await ob.rejected()) == 1 and await ob.next_batch(10) == []
    finally:
        await ob.close()


async def test_a_copy_merged_into_a_rejected_row_says_so_in_the_queue(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The operator queue's row is what a retry sends: a copy merged into it is logged (WARNING,
    key and what it adds) and its last_error says the content was replaced and by what."""
    plugin, cloud = _evotor_copies()
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        await ob.append(cloud)
        [row] = await ob.next_batch(10)
        await ob.mark_rejected(row.id, "INSUFFICIENT_POINTS", "refused by the core")
        with caplog.at_level(logging.WARNING, logger="posgw.outbox"):
            assert await ob.append(plugin) is False
        [queued] = await ob.rejected()
        assert queued.id == row.id and queued.reason == "INSUFFICIENT_POINTS"
        assert queued.event.receipt is not None and queued.event.receipt.customer is not None  # merged
        assert queued.last_error.startswith("a later copy replaced this content")
        assert "customer=phone:+79160000101" in queued.last_error and "cashier_id" in queued.last_error
        assert queued.last_error.endswith("refused by the core")  # the rejection's own text is kept
        [warning] = [r for r in caplog.records if "operator queue" in r.getMessage()]
        assert warning.levelname == "WARNING" and warning.key == cloud.key  # type: ignore[attr-defined]
        assert "customer=phone:+79160000101" in warning.detail  # type: ignore[attr-defined]
        assert await ob.append(plugin) is False  # the same copy again adds nothing: no second note
        [again] = await ob.rejected()
        assert again.last_error == queued.last_error
        assert await ob.retry(row.id)  # the retry sends the merged version
        [pending] = await ob.next_batch(10)
        assert pending.envelope == envelope_body(pending.event) and pending.payload == queued.payload
    finally:
        await ob.close()


async def test_conflicting_copies_past_the_limit_are_refused_not_dropped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAX_OPEN_CONFLICTS conflicting copies of a key wait in the operator queue: the next one is
    refused with a retriable StorageError (the driver answers "not stored", the till resends),
    ERROR and the driver's alarm once; once the operator resolved one, the resend is stored."""
    monkeypatch.setattr(outbox_module, "MAX_OPEN_CONFLICTS", 2)
    m = Metrics()
    ob = await Outbox.open(tmp_path / "o.db", metrics=m)
    first, *copies = [sale("R1", 1, amount=10000 + i) for i in range(4)]  # one key, other amounts
    try:
        await ob.append(first)
        assert await ob.append(copies[0]) is False and await ob.append(copies[1]) is False
        queued = await ob.rejected()
        assert [r.key for r in queued] == [f"{first.key}:conflict:1", f"{first.key}:conflict:2"]
        with caplog.at_level(logging.DEBUG, logger="posgw.outbox"):
            for _ in range(2):  # the till resends: refused each time, one ERROR
                with pytest.raises(ConflictLimit, match="2 conflicting copies") as refused:
                    await ob.append(copies[2])
                assert refused.value.retriable and isinstance(refused.value, StorageError)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].key == first.key  # type: ignore[attr-defined]
        alarm = ("native", f"conflicts:{first.key}")
        assert alarm in m.alarms and "posgw queue list" in m.alarms[alarm][0]
        assert m.registry.get_sample_value("posgw_outbox_events_total", {"outcome": "refused"}) == 2
        assert len(await ob.rejected()) == 2 and (await ob.stats()).writable  # nothing stored
        assert await ob.append(copies[0]) is False  # a copy already queued is still just a copy
        assert alarm in m.alarms  # ... and stores nothing: copies[2] is still refused, the alarm stays
        assert len(await ob.rejected()) == 2
        assert await ob.resolve(queued[0].id, "checked with the shop")
        assert await ob.append(copies[2]) is False  # room again: stored, the alarm is cleared
        assert [r.key for r in await ob.rejected()] == [f"{first.key}:conflict:2", f"{first.key}:conflict:3"]
        assert alarm not in m.alarms
    finally:
        await ob.close()


async def test_waiting_rows_are_out_of_the_stream_until_woken(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        early = refund("R1", 1, "native:R1:1:9:")
        later = sale("R1", 2)
        await ob.append(early)
        await ob.append(later)
        first, _ = await ob.next_batch(10)
        assert await ob.mark_waiting(first.id, 1, "SALE_NOT_YET_KNOWN", "sale native:R1:1:9: is not known")
        assert [r.key for r in await ob.next_batch(10)] == [later.key]
        [waiting] = await ob.waiting()
        assert (waiting.state, waiting.attempts, waiting.reason) == ("waiting", 1, "SALE_NOT_YET_KNOWN")
        assert (await ob.stats()).pending == 1
        assert await ob.wake([first.id]) == 1
        assert [r.key for r in await ob.next_batch(10)] == [early.key, later.key]
        assert await ob.wake([first.id]) == 0  # pending already
        assert await ob.mark_waiting(first.id, 2, "SALE_NOT_YET_KNOWN", "x")
        await ob.mark_rejected(first.id, "SALE_NEVER_ARRIVED", "sale native:R1:1:9: never arrived")
        [queued] = await ob.rejected()
        assert queued.reason == "SALE_NEVER_ARRIVED" and await ob.waiting() == []
    finally:
        await ob.close()


async def test_a_damaged_file_is_salvaged_and_degraded_until_acknowledged(tmp_path: Path) -> None:
    """Found by trying it: random bytes over two pages of a file holding 45 pending events made
    the gateway move it aside and start empty, 45 acknowledged events abandoned, nothing reported."""
    from tests.gateway.test_salvage import make_damaged

    path = tmp_path / "o.db"
    events = await asyncio.to_thread(make_damaged, path)
    m = Metrics()
    ob = await Outbox.open(path, metrics=m)
    try:
        st = await ob.stats()
        [report] = st.salvage
        assert report.moved_to == st.moved_aside and report.salvaged + report.lost == 45 and report.lost > 0
        assert st.pending == report.salvaged == report.pending
        assert {r.key for r in await ob.next_batch(100)} <= {e.key for e in events}
        assert m.registry.get_sample_value("posgw_outbox_salvage_unacknowledged") == 1
        assert m.registry.get_sample_value("posgw_outbox_salvage_lost_rows") == report.lost
    finally:
        await ob.close()
    ob = await Outbox.open(path, metrics=m)  # the state survives a restart
    try:
        assert len((await ob.stats()).salvage) == 1
        assert await ob.ack_salvage() == 1
        assert (await ob.stats()).salvage == ()
        assert await ob.ack_salvage() == 0
        assert m.registry.get_sample_value("posgw_outbox_salvage_unacknowledged") == 0
    finally:
        await ob.close()
    ob = await Outbox.open(path)
    try:
        assert (await ob.stats()).salvage == ()
    finally:
        await ob.close()


async def test_a_full_disk_logs_per_state_change_not_per_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """ENOSPC at the SQLite layer: every append in the meantime is refused (StorageError), the log
    gets one ERROR going down, one reminder per REMIND_EVERY_S, one coming back up."""
    from gateway import outbox as outbox_mod
    from gateway import outbox_db as db

    clock = FakeClock()
    m = Metrics()
    ob = await Outbox.open(tmp_path / "o.db", metrics=m, clock=clock)
    real = db.insert_events
    full = True

    def insert(*args: object, **kwargs: object) -> object:
        if full:
            raise sqlite3.OperationalError("database or disk is full")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(db, "insert_events", insert)
    try:
        with caplog.at_level(logging.ERROR, logger="posgw.outbox"):
            for i in range(30):  # the tills resend, again and again
                with pytest.raises(StorageError, match="disk is full"):
                    await ob.append(sale("R1", i))
                clock.advance(1.0)
            assert m.registry.get_sample_value("posgw_outbox_writable") == 0
            assert not (await ob.stats()).writable
            clock.advance(outbox_mod.REMIND_EVERY_S)
            for i in range(5):
                with pytest.raises(StorageError):
                    await ob.append(sale("R1", i))
            full = False
            assert await ob.append(sale("R1", 100)) is True
            assert await ob.append(sale("R1", 101)) is True
        messages = [r.message for r in caplog.records if r.levelno >= logging.ERROR]
        assert messages == ["outbox not writable: sales are refused (the tills are asked to resend)",
                            "outbox still not writable", "outbox writable again"]
        assert caplog.records[1].__dict__["refused_events"] == 30  # since the first ERROR, this one too
        assert m.registry.get_sample_value("posgw_outbox_writable") == 1
        assert m.registry.get_sample_value("posgw_outbox_events_total", {"outcome": "failed"}) == 35
        assert [r.register_seq for r in await ob.next_batch(10)] == [1, 2]  # no gap left by the refusals
    finally:
        await ob.close()


async def test_state_reads_asked_together_share_reader_trips(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        await asyncio.gather(*(ob.put_state("d", f"k{i}", f"v{i}") for i in range(0, 40, 2)))
        got = await asyncio.gather(*(ob.get_state("d", f"k{i}") for i in range(40)))
        assert got == [f"v{i}" if i % 2 == 0 else None for i in range(40)]  # each read its own answer
        assert ob.state_read_trips <= 2  # 40 reads: one trip, or the first alone and the rest together
        assert await ob.get_state("d", "k0") == "v0"  # and one read alone still gets its trip
    finally:
        await ob.close()
    with pytest.raises(StorageError, match="closed"):
        await ob.get_state("d", "k0")


async def test_the_cores_ack_is_stored_as_received_and_shown_as_json(tmp_path: Path) -> None:
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        await ob.append(sale("R1", 1))
        (row,) = await ob.next_batch(10)
        ack = pb.EventAck(event_id=row.key, register_id="R1", register_seq=1,
                          commit=pb.CommitResponse(operation_id="op-9", balance=150, tier="gold"))
        await ob.mark_delivered_many([(row.id, ack.SerializeToString())])
        got = await ob.get(row.id)
        assert got is not None and got.state == "delivered"
        shown = {"commit": {"operation_id": "op-9", "balance": "150", "tier": "gold"}}  # (int64 as JSON text)
        assert json.loads(got.result_json) == shown
    finally:
        await ob.close()
