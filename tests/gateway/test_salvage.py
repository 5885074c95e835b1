"""gateway.salvage: the readable rows of a damaged outbox copied into a new one, the rest counted."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import stat
import textwrap
from pathlib import Path

import pytest

from gateway.convert import envelope_body
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.outbox import Outbox
from gateway.outbox_db import SCHEMA_VERSION
from gateway.payload import event_to_json
from gateway.receipt import Event
from gateway.salvage import SalvageReport, rows_of, salvage
from tests.gateway.outbox_fixtures import sale, write_schema_2

PAGE = 4096


def make_damaged(path: Path, n: int = 45, *, seed: int = 7, smash: tuple[int, ...] = (1, 3)) -> list[Event]:
    """An outbox holding ``n`` pending events (three registers) with random bytes written over
    two of the pages that hold payloads (``smash``: their indexes among those pages)."""
    events = [sale(f"R{i % 3}", i) for i in range(n)]

    async def fill() -> None:
        ob = await Outbox.open(path)
        try:
            for ev in events:
                await ob.append(ev)
            await ob.put_state("poster", "cursor", "c-42")
        finally:
            await ob.close()

    asyncio.run(fill())
    if smash:
        data = bytearray(path.read_bytes())
        payload_pages = [
            i for i in range(1, len(data) // PAGE)
            if b'"lines"' in data[i * PAGE:(i + 1) * PAGE]
        ]
        rng = random.Random(seed)
        for which in smash:
            page = payload_pages[which]
            data[page * PAGE:(page + 1) * PAGE] = rng.randbytes(PAGE)
        path.write_bytes(bytes(data))
    return events


async def _pending(path: Path) -> list[tuple[str, str, int, bytes]]:
    ob = await Outbox.open(path, create=False, recover=False)
    try:
        rows = await ob.next_batch(1000)
        return [(r.key, r.register_id, r.register_seq, event_to_json(r.event)) for r in rows]
    finally:
        await ob.close()


def test_a_damaged_file_gives_every_readable_row_pending_in_order(tmp_path: Path) -> None:
    damaged = tmp_path / "o.db"
    events = make_damaged(damaged)
    before = damaged.read_bytes()
    report = salvage(damaged, tmp_path / "new.db", now=100.0, cli=None)
    assert damaged.read_bytes() == before  # the damaged file is only read (through copies)
    assert report.salvaged + report.lost == 45 and 0 < report.lost < 45 and report.complete
    assert report.pending == report.salvaged and not report.everything_read
    assert report.methods == ("row by row",) and report.state_salvaged == 1
    rows = asyncio.run(_pending(tmp_path / "new.db"))
    original = {ev.key: (ev.register_id, event_to_json(ev)) for ev in events}
    seq_of = {ev.key: i // 3 + 1 for i, ev in enumerate(events)}  # R{i%3}: the (i//3+1)th of its register
    assert len(rows) == report.salvaged
    for key, register, seq, payload in rows:  # key, register, payload and sequence number kept
        assert original[key] == (register, payload) and seq == seq_of[key]
    for reg in ("R0", "R1", "R2"):  # per register: still in sequence order
        seqs = [seq for _, r, seq, _ in rows if r == reg]
        assert seqs == sorted(seqs)
    lost_keys = set(original) - {r[0] for r in rows}
    assert len(lost_keys) == report.lost and len(report.lost_ids) == report.lost


def test_sequences_stay_monotonic_after_a_salvage(tmp_path: Path) -> None:
    make_damaged(tmp_path / "o.db")
    salvage(tmp_path / "o.db", tmp_path / "new.db", now=1.0, cli=None)

    async def go() -> int:
        ob = await Outbox.open(tmp_path / "new.db")
        try:
            await ob.append(sale("R0", 1000))
            return next(r.register_seq for r in await ob.next_batch(1000) if r.key == sale("R0", 1000).key)
        finally:
            await ob.close()

    assert asyncio.run(go()) == 16  # R0 had 15 events: the lost ones' numbers are never reused


def test_a_sound_file_is_read_whole(tmp_path: Path) -> None:
    make_damaged(tmp_path / "o.db", n=12, smash=())
    report = salvage(tmp_path / "o.db", tmp_path / "new.db", now=1.0, cli=None)
    assert (report.salvaged, report.lost, report.everything_read) == (12, 0, True)
    assert "12 salvaged (12 pending" in "\n".join(rows_of(report))


def test_garbage_yields_nothing_and_says_the_count_is_a_lower_bound(tmp_path: Path) -> None:
    (tmp_path / "o.db").write_bytes(b"this is not a database" * 300)
    report = salvage(tmp_path / "o.db", tmp_path / "new.db", now=1.0, cli=None)
    assert (report.salvaged, report.complete, report.everything_read) == (0, False, False)
    assert "at least" in "\n".join(rows_of(report))


def test_the_new_file_must_not_exist(tmp_path: Path) -> None:
    make_damaged(tmp_path / "o.db", n=2, smash=())
    (tmp_path / "new.db").write_text("mine")
    with pytest.raises(FileExistsError):
        salvage(tmp_path / "o.db", tmp_path / "new.db", now=1.0, cli=None)
    assert (tmp_path / "new.db").read_text() == "mine"


def _fake_cli(tmp_path: Path, body: str) -> str:
    tool = tmp_path / "fake-sqlite3"
    tool.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return str(tool)


def test_a_failing_recover_falls_back_to_row_by_row(tmp_path: Path) -> None:
    make_damaged(tmp_path / "o.db")
    # what Debian's sqlite3 3.40.1 does: the header, then "sql error: SQL logic error (1)"
    cli = _fake_cli(tmp_path, """\
        echo 'BEGIN;'; echo 'PRAGMA writable_schema = on;'
        echo 'sql error: SQL logic error (1)' >&2; exit 1
    """)
    report = salvage(tmp_path / "o.db", tmp_path / "new.db", now=1.0, cli=cli)
    assert report.methods == ("row by row",) and "sqlite3 .recover failed" in report.notes[0]
    assert report.salvaged + report.lost == 45 and report.lost > 0


def test_rows_sqlite_recovered_fill_what_the_walk_lost(tmp_path: Path) -> None:
    """A working ``.recover`` (here: a dump of the file before the damage) supplies the rows the
    row-by-row walk could not read; rows it returns are checked like any other."""
    sound = tmp_path / "sound.db"
    make_damaged(sound, smash=())
    import sqlite3

    conn = sqlite3.connect(sound)
    (tmp_path / "dump.sql").write_text("\n".join(conn.iterdump()) + "\n")
    conn.close()
    damaged = tmp_path / "o.db"
    damaged.write_bytes(sound.read_bytes())
    data = bytearray(damaged.read_bytes())
    pages = [i for i in range(1, len(data) // PAGE) if b'"lines"' in data[i * PAGE:(i + 1) * PAGE]]
    for page in (pages[1], pages[3]):
        data[page * PAGE:(page + 1) * PAGE] = random.Random(page).randbytes(PAGE)
    damaged.write_bytes(bytes(data))
    cli = _fake_cli(tmp_path, f"cat '{tmp_path / 'dump.sql'}'\n")
    report = salvage(damaged, tmp_path / "new.db", now=1.0, cli=cli)
    assert report.methods == ("sqlite3 .recover", "row by row")
    assert (report.salvaged, report.lost, report.everything_read) == (45, 0, True)
    assert len(asyncio.run(_pending(tmp_path / "new.db"))) == 45


def test_report_json_round_trip() -> None:
    r = SalvageReport(source="a", into="b", moved_to="c", salvaged=3, pending=2, lost=1,
                      methods=("row by row",), notes=("x",), at=5.0, lost_ids=(4,))
    assert SalvageReport.from_json(r.to_json()) == r
    assert r.summary()["moved_to"] == "c" and "lost_ids" not in r.summary()


def test_salvaged_rows_keep_the_cores_answer_and_have_their_envelope_built_from_the_payload(
    tmp_path: Path,
) -> None:
    events = [sale("R1", i) for i in range(4)]
    ack = pb.EventAck(event_id=events[0].key, commit=pb.CommitResponse(operation_id="op-7"))

    async def fill() -> None:
        ob = await Outbox.open(tmp_path / "o.db")
        try:
            for ev in events:
                await ob.append(ev)
            (first, *_) = await ob.next_batch(10)
            await ob.mark_delivered_many([(first.id, ack.SerializeToString())])
        finally:
            await ob.close()

    asyncio.run(fill())
    with sqlite3.connect(tmp_path / "o.db") as raw:  # a stored envelope that disagrees with its payload
        raw.execute("update events set envelope = x'ff' where key = ?", (events[1].key,))
    report = salvage(tmp_path / "o.db", tmp_path / "new.db", now=1.0, cli=None)
    assert (report.salvaged, report.pending, report.lost) == (4, 3, 0)
    with sqlite3.connect(tmp_path / "new.db") as raw:
        stored = dict(raw.execute("select key, envelope from events").fetchall())
        (result,) = raw.execute("select result from events where state = 'delivered'").fetchone()
    assert stored == {ev.key: envelope_body(ev) for ev in events}
    assert result == ack.SerializeToString()


def test_a_schema_2_file_is_salvaged_into_schema_3(tmp_path: Path) -> None:
    events = [sale("R1", i) for i in range(3)]
    write_schema_2(tmp_path / "o.db", [(ev, "pending", "") for ev in events])
    report = salvage(tmp_path / "o.db", tmp_path / "new.db", now=1.0, cli=None)
    assert (report.salvaged, report.lost, report.everything_read) == (3, 0, True)
    with sqlite3.connect(tmp_path / "new.db") as raw:
        assert raw.execute("pragma user_version").fetchone() == (SCHEMA_VERSION,)
        stored = dict(raw.execute("select key, envelope from events").fetchall())
    assert stored == {ev.key: envelope_body(ev) for ev in events}
