"""gateway.outbox_db: the row states and their one transition table, applied in SQL."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

from gateway import outbox_db as db
from gateway import salvage
from gateway.errors import ConfigError, StorageError
from gateway.outbox import Outbox
from gateway.outbox_db import TRANSITIONS, Action, RowState, TransitionRefused, next_state
from tests.gateway.outbox_fixtures import sale

ALLOWED = {
    (RowState.PENDING, Action.DELIVER): RowState.DELIVERED,
    (RowState.PENDING, Action.REJECT): RowState.REJECTED,
    (RowState.REJECTED, Action.RETRY): RowState.PENDING,
    (RowState.REJECTED, Action.RESOLVE): RowState.RESOLVED,
    (RowState.PENDING, Action.WAIT): RowState.WAITING,
    (RowState.WAITING, Action.WAKE): RowState.PENDING,
    (RowState.WAITING, Action.REJECT): RowState.REJECTED,
}
EVERY = list(itertools.product(RowState, Action))


def test_stored_strings_are_unchanged() -> None:
    """Existing outbox files hold these strings; they must still read."""
    assert [s.value for s in RowState] == ["pending", "delivered", "rejected", "resolved", "waiting"]
    assert RowState("rejected") is RowState.REJECTED and RowState.PENDING == "pending"


def test_the_table_is_exactly_the_allowed_moves() -> None:
    table = {(src, action): dst for action, moves in TRANSITIONS.items() for src, dst in moves.items()}
    assert table == ALLOWED
    assert set(TRANSITIONS) == set(Action)  # every action moves something


@pytest.mark.parametrize(("state", "action"), [p for p in EVERY if p in ALLOWED])
def test_allowed_transitions(state: RowState, action: Action) -> None:
    assert next_state(state, action) == ALLOWED[state, action]


@pytest.mark.parametrize(("state", "action"), [p for p in EVERY if p not in ALLOWED])
def test_refused_transitions(state: RowState, action: Action) -> None:
    with pytest.raises(TransitionRefused) as info:
        next_state(state, action)
    assert (info.value.action, info.value.state) == (action, state)


def test_delivered_and_resolved_are_final() -> None:
    for state in (RowState.DELIVERED, RowState.RESOLVED):
        assert all(state not in moves for moves in TRANSITIONS.values())


# ---------------------------------------------------------------- in SQL


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    eng, moved = db.open_store(
        tmp_path / "outbox.db", busy_timeout_ms=1000, create=True, recover=None, now=0.0
    )
    assert moved == ""
    return eng


def _insert(conn: Connection, state: RowState) -> int:
    with conn.begin():
        (outcome,), _ = db.insert_events(conn, [db.NewEvent(f"k-{state}", "R1", "sale", b"{}")], 1.0)
        row_id = int(conn.exec_driver_sql("SELECT max(id) FROM events").scalar_one())
        conn.exec_driver_sql(f"UPDATE events SET state = '{state}' WHERE id = {row_id}")  # set up only
    assert outcome.register_seq > 0
    return row_id


def _state(conn: Connection, row_id: int) -> tuple[str, float]:
    row = db.fetch_row(conn, row_id)
    conn.rollback()
    assert row is not None
    return str(row.state), float(row.updated_at)


@pytest.mark.parametrize(("state", "action"), EVERY)
def test_transition_in_sql_follows_the_table(engine: Engine, state: RowState, action: Action) -> None:
    with db.connect(engine, writer=True) as conn:
        row_id = _insert(conn, state)
        values = {"reason": "", "last_error": "x"} if action == Action.REJECT else {"note": "n"}
        with conn.begin():
            changed = db.transition(conn, action, [(row_id, values)], 5.0)
        stored, updated = _state(conn, row_id)
        if (state, action) in ALLOWED:
            assert changed == 1 and (stored, updated) == (ALLOWED[state, action].value, 5.0)
        else:  # the WHERE clause names the from-state: nothing is overwritten
            assert changed == 0 and (stored, updated) == (state.value, 1.0)
    engine.dispose()


def test_a_write_transaction_is_one_sqlite_transaction_with_sqlalchemy_joining(engine: Engine) -> None:
    """The writer's group commit begins and commits on the sqlite3 connection; a SQLAlchemy
    statement inside joins it: both commit together, and an error rolls both back."""
    conn = db.connect(engine, writer=True)
    try:
        row_id = _insert(conn, RowState.PENDING)
        with db.write_transaction(conn):
            db.insert_events(conn, [db.NewEvent("k-raw", "R1", "sale", b"{}")], 2.0)  # plain SQL
            db.transition(conn, Action.DELIVER, [(row_id, {})], 2.0)  # SQLAlchemy Core
        assert not conn.in_transaction() and not db.raw(conn).in_transaction
        assert _state(conn, row_id)[0] == RowState.DELIVERED
        with db.write_transaction(conn):
            db.insert_events(conn, [db.NewEvent("k-other", "R1", "sale", b"{}")], 2.5)
        stored = db.fetch_key(conn, "k-other")
        assert stored is not None
        other = stored.id
        with pytest.raises(RuntimeError, match="mid-batch"), db.write_transaction(conn):
            db.insert_events(conn, [db.NewEvent("k-lost", "R1", "sale", b"{}")], 3.0)
            db.transition(conn, Action.DELIVER, [(other, {})], 3.0)
            raise RuntimeError("mid-batch")
        assert not conn.in_transaction() and not db.raw(conn).in_transaction
        assert _state(conn, other)[0] == RowState.PENDING  # neither the Core change...
        keys = {k for (k,) in db.raw(conn).execute("SELECT key FROM events").fetchall()}
        assert "k-raw" in keys and "k-lost" not in keys  # ...nor the plain insert was kept
        with db.write_transaction(conn):  # and the connection goes on
            db.insert_events(conn, [db.NewEvent("k-after", "R1", "sale", b"{}")], 4.0)
        assert db.fetch_key(conn, "k-after") is not None
    finally:
        conn.close()


def test_a_concurrent_change_is_not_overwritten(engine: Engine) -> None:
    """An operator resolves a rejected row; a retry decided on the old state changes nothing."""
    with db.connect(engine, writer=True) as conn:
        row_id = _insert(conn, RowState.REJECTED)
        with conn.begin():
            assert db.transition(conn, Action.RESOLVE, [(row_id, {"note": "paid cash"})], 2.0) == 1
        with conn.begin():
            assert db.transition(conn, Action.RETRY, [(row_id, {"reason": ""})], 3.0) == 0
        assert _state(conn, row_id) == ("resolved", 2.0)
    engine.dispose()


def test_transition_sets_only_the_columns_an_action_may(engine: Engine) -> None:
    with db.connect(engine, writer=True) as conn:
        row_id = _insert(conn, RowState.PENDING)
        with pytest.raises(ValueError, match="cannot set"), conn.begin():
            db.transition(conn, Action.DELIVER, [(row_id, {"state": "resolved"})], 2.0)
        with pytest.raises(ValueError, match="same columns"), conn.begin():
            db.transition(conn, Action.DELIVER, [(row_id, {"note": "a"}), (row_id, {"reason": "b"})], 2.0)
        assert db.transition(conn, Action.DELIVER, [], 2.0) == 0
        assert _state(conn, row_id) == ("pending", 1.0)
    engine.dispose()


@pytest.mark.parametrize("state", list(RowState))
def test_deliver_sent_delivers_only_a_pending_row_with_the_payload_sent(
    engine: Engine, state: RowState,
) -> None:
    with db.connect(engine, writer=True) as conn:
        row_id = _insert(conn, state)
        with conn.begin():  # a noted retry
            conn.exec_driver_sql(f"UPDATE events SET last_error = 'x' WHERE id = {row_id}")
        with conn.begin():
            assert db.deliver_sent(conn, [(row_id, b'{"merged": 1}', b"ack")], 2.0) == 0  # merged since
        assert _state(conn, row_id) == (state.value, 1.0)
        with conn.begin():
            changed = db.deliver_sent(conn, [(row_id, b"{}", b"\x22\x00")], 3.0)
        row = db.fetch_row(conn, row_id)
        conn.rollback()
        assert row is not None
        if state == RowState.PENDING:
            assert changed == 1 and (row.state, row.updated_at, row.result, row.last_error) == (
                "delivered", 3.0, b"\x22\x00", "")
        else:  # only pending rows are delivered
            assert changed == 0 and (row.state, row.updated_at, row.last_error) == (state.value, 1.0, "x")
        with conn.begin():
            assert db.deliver_sent(conn, [], 4.0) == 0
    engine.dispose()


# ---------------------------------------------------------------- open: unusable vs damaged files

def _open(path: Path, *, recover: bool = True, create: bool = True) -> tuple[Engine, str]:
    return db.open_store(path, busy_timeout_ms=200, create=create,
                         recover=salvage.salvage if recover else None, now=0.0)


def _seed(path: Path, n: int) -> None:
    async def go() -> None:
        ob = await Outbox.open(path)
        try:
            for i in range(n):
                await ob.append(sale("R1", i))
        finally:
            await ob.close()

    asyncio.run(go())


def _pending(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM events WHERE state = 'pending'").fetchone()[0])
    finally:
        conn.close()


def test_a_directory_in_place_of_the_file_stops_the_start_and_moves_nothing(tmp_path: Path) -> None:
    """Found by trying it: SQLite says "unable to open database file" and the directory was renamed
    aside as if it were a corrupt outbox."""
    path = tmp_path / "outbox.db"
    path.mkdir()
    (path / "keep").write_text("x")
    with pytest.raises(db.OutboxInaccessible) as info:
        _open(path)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, StorageError)
    assert str(path) in str(info.value) and "is a directory" in str(info.value)
    assert (path / "keep").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]


def test_a_parent_that_is_a_file_is_named(tmp_path: Path) -> None:
    """What root cannot get past: a regular file where the outbox's directory should be."""
    (tmp_path / "data").write_text("not a directory")
    with pytest.raises(db.OutboxInaccessible, match="cannot create the outbox directory"):
        _open(tmp_path / "data" / "outbox.db")
    assert (tmp_path / "data").read_text() == "not a directory"


@pytest.mark.parametrize(("message", "name", "fix"), [
    ("unable to open database file", "SQLITE_CANTOPEN", "chown"),
    ("attempt to write a readonly database", "SQLITE_READONLY", "remount read-write"),
    ("disk I/O error", "SQLITE_IOERR", "dmesg"),
    ("database or disk is full", "SQLITE_FULL", "free space"),
])
def test_sqlite_open_errors_stop_the_start_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str, name: str, fix: str,
) -> None:
    """A read-only directory or another user's file as SQLite reports it (the real messages): the
    start stops naming the path and the fix; the file holding 20 pending events is not moved."""
    path = tmp_path / "outbox.db"
    _seed(path, 20)
    real = sqlite3.dbapi2.connect  # what SQLAlchemy's pysqlite dialect calls

    def refusing(*args: object, **kwargs: object) -> sqlite3.Connection:
        exc = sqlite3.OperationalError(message)
        exc.sqlite_errorname = name
        raise exc

    monkeypatch.setattr(sqlite3.dbapi2, "connect", refusing)
    with pytest.raises(db.OutboxInaccessible) as info:
        _open(path)
    monkeypatch.setattr(sqlite3.dbapi2, "connect", real)
    assert str(path) in str(info.value) and fix in info.value.fix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"] and _pending(path) == 20


@pytest.mark.parametrize(("err", "fix"), [
    (errno.EACCES, "chown"), (errno.EROFS, "remount read-write"), (errno.EIO, "dmesg"),
    (errno.ENOSPC, "free space"),
])
def test_os_errors_at_open_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, fix: str,
) -> None:
    """EACCES (another user's file, mode 600), EROFS, EIO, ENOSPC met by the open-time probe."""
    path = tmp_path / "outbox.db"
    _seed(path, 20)
    real = os.open

    def failing(p: object, flags: int, *args: object, **kwargs: object) -> int:
        if str(p) == str(path) or ".posgw-probe-" in str(p):
            raise OSError(err, os.strerror(err), str(p))
        return real(p, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing)
    with pytest.raises(db.OutboxInaccessible) as info:
        _open(path)
    monkeypatch.setattr(os, "open", real)
    assert info.value.fix.startswith(fix) or fix in info.value.fix
    assert str(path) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"] and _pending(path) == 20


@contextlib.contextmanager
def _tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        why = done.stderr.decode().strip()
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {why}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def test_a_real_read_only_filesystem_stops_the_start(tmp_path: Path) -> None:
    """A tmpfs holding an outbox with 20 pending events, remounted read-only."""
    with _tmpfs(tmp_path / "mnt") as mnt:
        path = mnt / "outbox.db"
        _seed(path, 20)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(db.OutboxInaccessible) as info:
            _open(path)
        assert "read-only" in str(info.value) and "remount read-write" in info.value.fix
        assert sorted(p.name for p in mnt.iterdir()) == ["outbox.db"]
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        engine, moved = _open(path)  # writable again: the same file, every event still there
        engine.dispose()
        assert moved == "" and _pending(path) == 20


@pytest.mark.parametrize(("message", "name", "kind"), [
    ("database disk image is malformed", "SQLITE_CORRUPT", "damaged"),
    ("file is not a database", "SQLITE_NOTADB", "damaged"),
    ("quick_check: Page 6: btreeInitPage() returns error code 11", "", "damaged"),
    ("unable to open database file", "SQLITE_CANTOPEN", "environment"),
    ("disk I/O error", "SQLITE_IOERR_READ", "environment"),
    ("attempt to write a readonly database", "SQLITE_READONLY", "environment"),
    ("database or disk is full", "SQLITE_FULL", "environment"),
    ("database is locked", "SQLITE_BUSY", "busy"),
])
def test_classify(message: str, name: str, kind: str) -> None:
    exc = sqlite3.OperationalError(message) if name else sqlite3.DatabaseError(message)
    if name:
        exc.sqlite_errorname = name
    assert db.classify(exc) == kind


def test_a_damaged_file_is_left_alone_without_recover(tmp_path: Path) -> None:
    from tests.gateway.test_salvage import make_damaged

    path = tmp_path / "o.db"
    make_damaged(path)
    before = path.read_bytes()
    with pytest.raises(db.OutboxDamaged, match="posgw outbox salvage"):
        _open(path, recover=False, create=False)
    assert path.read_bytes() == before


def test_a_damaged_file_is_salvaged_then_moved_aside(tmp_path: Path) -> None:
    from tests.gateway.test_salvage import make_damaged

    path = tmp_path / "o.db"
    make_damaged(path)
    before = path.read_bytes()
    engine, moved = _open(path)
    engine.dispose()
    assert Path(moved).read_bytes() == before and Path(moved).name.startswith("o.db.corrupt-")
    assert 0 < _pending(path) < 45
    assert not (tmp_path / "o.db.salvage").exists()


def test_a_salvage_interrupted_before_its_rename_is_finished(tmp_path: Path) -> None:
    """Crash after the damaged file was moved aside, before the salvage took its place."""
    path = tmp_path / "o.db"
    _seed(tmp_path / "o.db.salvage", 3)
    engine, moved = _open(path)
    engine.dispose()
    assert moved == "" and _pending(path) == 3 and not (tmp_path / "o.db.salvage").exists()


def test_a_salvage_interrupted_before_it_finished_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    _seed(path, 2)
    (tmp_path / "o.db.salvage").write_bytes(b"half written")
    engine, _ = _open(path)
    engine.dispose()
    assert _pending(path) == 2 and not (tmp_path / "o.db.salvage").exists()
