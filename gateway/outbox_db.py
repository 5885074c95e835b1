"""The outbox's on-disk store: schema, open/recover, and the synchronous SQL the outbox's
threads run. No asyncio here; :mod:`gateway.outbox` owns the threads and the group commit.

On-disk format (SQLite, ``PRAGMA user_version = 3``, journal_mode=WAL, synchronous=FULL):

``events`` — one row per idempotency key, never two:
    id INTEGER PRIMARY KEY AUTOINCREMENT  append order (ids are never reused)
    key TEXT UNIQUE                       the event's idempotency key
    register_id TEXT, register_seq INT    per-register order, UNIQUE together; seq grows by 1
    kind TEXT                             sale | refund | cancel
    payload BLOB                          :func:`gateway.payload.event_to_json` (versioned JSON): the
                                          canonical event, read by the copy merge rules, the operator
                                          queue and the salvage (decoded on demand, never to deliver)
    state TEXT                            pending | delivered | rejected | resolved
    attempts INT                          failed delivery attempts noted by the sender
    created_at, updated_at REAL           Unix seconds
    last_error, reason, note TEXT         last delivery error / rejection reason code / operator note
    result_json TEXT                      the core's ack result (protobuf JSON): rows delivered by
                                          schema 2 and :meth:`gateway.outbox.Outbox.mark_delivered`
    envelope BLOB                         :func:`gateway.convert.envelope_body`: the core's
                                          EventEnvelope without its header, built once at append from
                                          the payload's event and sent as it is (schema 3)
    result BLOB                           the core's EventAck as received, once delivered by the sender
                                          (schema 3; shown as result_json on demand)
``registers`` — register_id PRIMARY KEY, last_seq INT: the last sequence number handed out, so
    sequence numbers stay monotonic even after delivered rows are pruned.
``salvage`` — id, at REAL, report TEXT (JSON of :class:`gateway.salvage.SalvageReport`),
    acknowledged_at REAL or NULL: the salvages that made this file out of a damaged one; one not
    acknowledged yet keeps the gateway degraded (additive: no schema version change).
``driver_state`` — (driver, key) PRIMARY KEY, value TEXT, updated_at REAL, expires_at REAL or NULL
    (never): the drivers' persisted state (cursors, links between a till's ids and our keys),
    written through the same group commit as the events; expired rows are pruned with the
    delivered events. Version 1 files (without it) gain the table when opened.

Older files are migrated when opened (:func:`check_and_create`, one transaction): version 1 gains
``driver_state``; versions 1 and 2 gain ``envelope`` and ``result``, and every undelivered row
(pending, waiting, rejected) gets its envelope built from its payload. A row whose envelope is
empty (its payload unreadable, or written by an older posgw next to this one) has it built when
the sender reads it (:meth:`gateway.outbox.Outbox.next_batch`).

States (:class:`RowState`, stored as these strings) change only by the actions of one table,
:data:`TRANSITIONS`, applied by one function, :func:`transition`: deliver (pending -> delivered,
core ack with a result), reject (pending -> rejected, permanent rejection: the operator queue),
retry (rejected -> pending, operator) and resolve (rejected -> resolved, operator, with a note);
wait (pending -> waiting: the core deferred it, its sale is not there yet) and wake (waiting ->
pending, the sender: due again), and reject also from waiting (the wait's bound is over).
The UPDATE's WHERE clause names the from-state, so a change made concurrently (an operator's
resolve racing the sender's ack) is never overwritten: the later action changes nothing.
Delivered rows are pruned after ``keep_delivered_s``; nothing else is ever deleted.

Every connection is used by one thread only (the outbox gives each of its threads its own).
Write transactions start with ``BEGIN IMMEDIATE`` so a busy database fails fast and whole.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from gateway.errors import ConfigError, StorageError

log = logging.getLogger("posgw.outbox")

SCHEMA_VERSION = 3  # 2: driver_state; 3: events.envelope and events.result (older files migrated at open)


class RowState(StrEnum):
    """An ``events`` row's state; the values are the strings stored in the file."""

    PENDING = "pending"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    RESOLVED = "resolved"
    WAITING = "waiting"  # set aside: the core does not know its sale yet; woken and resent later


class Action(StrEnum):
    """What changes a row's state (see :data:`TRANSITIONS`)."""

    DELIVER = "deliver"  # the core acked it (sender)
    REJECT = "reject"  # the core refused it for good, or its payload is unreadable (sender, outbox)
    RETRY = "retry"  # deliver it again with the same key (operator)
    RESOLVE = "resolve"  # handled outside the gateway, with a note (operator)
    WAIT = "wait"  # the core deferred it (SALE_NOT_YET_KNOWN): set aside, out of the register's way (sender)
    WAKE = "wake"  # a waiting row is due again (backoff, or its sale was delivered) (sender)


# The one table of allowed state changes: action -> from-state -> to-state. Anything not here is
# refused (a pair missing from the table never reaches the file).
TRANSITIONS: Mapping[Action, Mapping[RowState, RowState]] = {
    Action.DELIVER: {RowState.PENDING: RowState.DELIVERED},
    Action.REJECT: {RowState.PENDING: RowState.REJECTED, RowState.WAITING: RowState.REJECTED},
    Action.RETRY: {RowState.REJECTED: RowState.PENDING},
    Action.RESOLVE: {RowState.REJECTED: RowState.RESOLVED},
    Action.WAIT: {RowState.PENDING: RowState.WAITING},
    Action.WAKE: {RowState.WAITING: RowState.PENDING},
}


class TransitionRefused(ValueError):
    """``action`` is not allowed from ``state`` by :data:`TRANSITIONS`."""

    def __init__(self, action: Action, state: RowState) -> None:
        super().__init__(f"outbox row state {state!s}: {action!s} is not allowed")
        self.action, self.state = action, state


def next_state(state: RowState, action: Action) -> RowState:
    """The state ``action`` moves a row in ``state`` to; :class:`TransitionRefused` if not allowed."""
    to = TRANSITIONS[action].get(state)
    if to is None:
        raise TransitionRefused(action, state)
    return to

metadata = MetaData()
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False, unique=True),
    Column("register_id", Text, nullable=False),
    Column("register_seq", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Column("note", Text, nullable=False, default=""),
    Column("result_json", Text, nullable=False, default=""),
    # schema 3, appended as ALTER TABLE appends them to an older file's table
    Column("envelope", LargeBinary, nullable=False, server_default=text("x''")),
    Column("result", LargeBinary, nullable=False, server_default=text("x''")),
    UniqueConstraint("register_id", "register_seq", name="events_register_seq"),
    sqlite_autoincrement=True,
)
Index("events_state_id", events.c.state, events.c.id)

driver_state = Table(
    "driver_state",
    metadata,
    Column("driver", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),  # NULL: kept until overwritten
)
Index("driver_state_expires", driver_state.c.expires_at)


class PendingRow(NamedTuple):
    """One whole ``events`` row as :func:`fetch_key` returns it (every column, in table order);
    delivery reads only its own columns (:class:`SendRow`)."""

    id: int
    key: str
    register_id: str
    register_seq: int
    kind: str
    payload: bytes
    state: str
    attempts: int
    created_at: float
    updated_at: float
    last_error: str
    reason: str
    note: str
    result_json: str
    envelope: bytes
    result: bytes


registers = Table(
    "registers",
    metadata,
    Column("register_id", Text, primary_key=True),
    Column("last_seq", Integer, nullable=False),
)
salvage_log = Table(  # additive: older posgw versions open a file that has it and ignore it
    "salvage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("report", Text, nullable=False),  # gateway.salvage.SalvageReport.to_json()
    Column("acknowledged_at", Float, nullable=True),  # NULL: the gateway reports degraded
)


def make_engine(path: Path, *, busy_timeout_ms: int) -> Engine:
    """An engine whose every new connection runs WAL + synchronous=FULL (checked by tests)."""
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if raw(conn).in_transaction:  # begun by write_transaction: SQLAlchemy joins it
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("writer") else "BEGIN")

    return engine


@contextlib.contextmanager
def write_transaction(conn: Connection) -> Iterator[None]:
    """One write transaction on the writer's ``conn``, begun and committed on the sqlite3
    connection itself: the group commit's hot statements are plain SQL (:func:`raw`), and
    SQLAlchemy's transaction bookkeeping cost about 50 us a commit (a tenth of a one-row commit's
    CPU). A SQLAlchemy statement inside it (a rare state change, the prune) joins the same SQLite
    transaction (see ``_on_begin``), and SQLAlchemy's commit then commits it. On any error the
    transaction is rolled back and the error raised."""
    sqlite = raw(conn)
    sqlite.execute("BEGIN IMMEDIATE")
    try:
        yield
        if conn.in_transaction():  # SQLAlchemy joined: its commit is the SQLite COMMIT
            conn.commit()
        if sqlite.in_transaction:
            sqlite.commit()
    except BaseException:  # the batch's work or its COMMIT failed: nothing of it stays
        with contextlib.suppress(Exception):
            if conn.in_transaction():
                conn.rollback()
        with contextlib.suppress(Exception):
            sqlite.rollback()
        raise


def connect(engine: Engine, *, writer: bool) -> Connection:
    conn = engine.connect()
    conn.info["writer"] = writer
    return conn


# ---------------------------------------------------------------- open / recover


class OutboxInaccessible(ConfigError, StorageError):
    """The outbox file or its directory cannot be used (permissions, a read-only filesystem,
    an I/O error, a full disk at open, a directory where the file should be): the start stops
    with the path and the fix. The file is never moved: nothing in it is damaged."""

    retriable = False

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        self.path = path
        super().__init__(str(path), "outbox", problem, fix)


class OutboxDamaged(StorageError):
    """The file is not a sound SQLite database (or not an outbox); ``posgw outbox salvage``
    copies what is readable into a new file."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(
            f"the outbox {path} is damaged ({problem}); nothing was changed. Salvage its readable rows "
            f"with `posgw outbox salvage {path} --into NEW`, or start the gateway: it salvages the file, "
            "moves it aside and reports degraded until an operator acknowledges"
        )


# errno -> (what it is, the fix); {path} and {user} are filled in
_OS_FIXES: Mapping[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "chown {user}: {path} (and its -wal/-shm files and directory), "
                                        "or run posgw as the file's owner"),
    errno.EPERM: ("operation not permitted", "chown {user}: {path} (and its directory); check chattr +i"),
    errno.EROFS: ("the filesystem is read-only", "remount read-write the filesystem holding {path} "
                                                 "(mount -o remount,rw), or point [outbox] path elsewhere"),
    errno.EIO: ("input/output error", "the disk holding {path} fails: check dmesg / smartctl, copy the file "
                                      "to a sound disk and point [outbox] path there"),
    errno.ENOSPC: ("no space left on the device", "free space on the filesystem holding {path}"),
    errno.EDQUOT: ("disk quota exceeded", "raise the quota of {user} or free space"),
    errno.EISDIR: ("is a directory, not an outbox file", "point [outbox] path at a file, or move the "
                                                         "directory {path} away"),
    errno.ENOTDIR: ("a part of the path is not a directory", "fix [outbox] path: a parent of {path} is a "
                                                            "file"),
}
# SQLite result codes that say the environment, not the file, is wrong (never move the file)
_ENVIRONMENT = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_PERM",
                "SQLITE_AUTH", "SQLITE_NOLFS")
_DAMAGE = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (a container's numeric uid)
        return "posgw"


def inaccessible(path: Path, exc: OSError, where: Path | None = None) -> OutboxInaccessible:
    """The error for an OS-level failure on the outbox (``where``: the path that failed)."""
    what, fix = _OS_FIXES.get(exc.errno or 0, (exc.strerror or str(exc), "check {path} and its directory"))
    at = where or path
    detail = f"{what} ({at}: {exc.strerror or exc})" if exc.strerror else what
    return OutboxInaccessible(path, f"cannot use the outbox: {detail}", fix.format(path=path, user=_user()))


def preflight(path: Path, *, create: bool) -> None:
    """Prove with plain OS calls that the file and its directory can be read and written, so a
    permission or I/O problem is named as such (SQLite says only "unable to open database file")."""
    if path.exists() and not path.is_file():
        kind = errno.EISDIR if path.is_dir() else errno.EINVAL
        raise inaccessible(path, OSError(kind, os.strerror(kind)))
    if not create and not path.exists():
        raise StorageError(f"no outbox at {path}: check the path (or the config's [outbox] path)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutboxInaccessible(
            path, f"cannot create the outbox directory {path.parent}: {exc.strerror or exc}",
            _OS_FIXES.get(exc.errno or 0, ("", "create the directory {path} or fix [outbox] path"))[1].format(
                path=path.parent, user=_user()),
        ) from exc
    try:
        if path.exists():
            fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
            try:
                os.read(fd, 100)
            finally:
                os.close(fd)
        # WAL needs <name>-wal and -shm beside the file: the directory must take new files
        probe = path.with_name(f".{path.name}.posgw-probe-{os.getpid()}")
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise inaccessible(path, exc, Path(exc.filename) if exc.filename else None) from exc


def _sqlite_error(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


def classify(exc: BaseException) -> str:
    """"damaged", "environment" (permissions, I/O, read-only, full: never move the file) or
    "busy" (another process holds it) for an error met while opening the outbox."""
    orig = _sqlite_error(exc)
    name = str(getattr(orig, "sqlite_errorname", "") or "")
    text = str(orig).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return "busy"
    if name.startswith(_DAMAGE):
        return "damaged"
    if name.startswith(_ENVIRONMENT):
        return "environment"
    if any(s in text for s in ("unable to open", "disk i/o", "readonly", "read-only", "disk is full",
                               "authorization")):
        return "environment"
    if any(s in text for s in ("malformed", "not a database", "quick_check")):
        return "damaged"
    return "environment" if isinstance(orig, sqlite3.OperationalError) else "damaged"


def _environment_error(path: Path, exc: BaseException) -> OutboxInaccessible:
    """Name the cause of an environment error SQLite reported vaguely: probe again with OS calls."""
    try:
        preflight(path, create=True)
    except OutboxInaccessible as named:
        return named
    orig = _sqlite_error(exc)
    name = str(getattr(orig, "sqlite_errorname", "") or "")
    text = str(orig).lower()
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        cause = errno.ENOSPC
    elif name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        cause = errno.EROFS
    elif name.startswith("SQLITE_IOERR") or "disk i/o" in text:
        cause = errno.EIO
    else:
        cause = errno.EACCES
    what, fix = _OS_FIXES[cause]
    return OutboxInaccessible(path, f"cannot use the outbox: {what} (sqlite: {orig})",
                              fix.format(path=path, user=_user()))


def check_and_create(engine: Engine) -> None:
    """Create the schema if missing and prove the file is a sound outbox (raises if not)."""
    with connect(engine, writer=True) as conn:
        version = conn.exec_driver_sql("PRAGMA user_version").scalar_one()
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"outbox schema version {version} is newer than this posgw understands ({SCHEMA_VERSION}); "
                "upgrade posgw or point it at another outbox file"
            )
        check = conn.exec_driver_sql("PRAGMA quick_check").scalar_one()
        conn.rollback()  # end the autobegun read transaction
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        with conn.begin():
            metadata.create_all(conn)
            if version < SCHEMA_VERSION:
                migrate(conn)
            conn.exec_driver_sql(f"PRAGMA user_version={SCHEMA_VERSION}")


_NEW_COLUMNS = (("envelope", "BLOB NOT NULL DEFAULT x''"), ("result", "BLOB NOT NULL DEFAULT x''"))


def migrate(conn: Connection) -> int:
    """Bring an older file's ``events`` to schema 3 within the caller's transaction: add the
    columns it lacks, and build the envelope of every undelivered row from its payload (a payload
    that cannot be read keeps an empty envelope: :meth:`gateway.outbox.Outbox.next_batch` sends it
    to the operator queue). Returns how many envelopes were built."""
    from gateway.convert import envelope_body  # the store reads protobufs only when migrating
    from gateway.payload import event_from_json

    cur = raw(conn).cursor()
    try:
        have = {str(r[1]) for r in cur.execute("PRAGMA table_info(events)")}
        for name, decl in _NEW_COLUMNS:
            if name not in have:
                cur.execute(f"ALTER TABLE events ADD COLUMN {name} {decl}")
        todo = cur.execute(
            "SELECT id, payload FROM events WHERE envelope = x'' AND state IN (?, ?, ?)",
            (RowState.PENDING.value, RowState.WAITING.value, RowState.REJECTED.value)).fetchall()
        built: list[tuple[bytes, int]] = []
        for row_id, payload in todo:
            try:
                built.append((envelope_body(event_from_json(payload)), int(row_id)))
            except (ValueError, KeyError, TypeError):
                continue
        cur.executemany("UPDATE events SET envelope = ? WHERE id = ?", built)
        if built:
            log.info("outbox migrated to schema 3", extra={"envelopes_built": len(built),
                                                           "unreadable": len(todo) - len(built)})
        return len(built)
    finally:
        cur.close()


def create_plain(path: Path) -> sqlite3.Connection:
    """A new, empty outbox at ``path`` (rollback journal, synchronous=FULL, so the finished file is
    one self-contained file to rename) and a plain connection to it: the salvage writes through it."""
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    try:
        with engine.begin() as schema:
            metadata.create_all(schema)
            schema.exec_driver_sql(f"PRAGMA user_version={SCHEMA_VERSION}")
    finally:
        engine.dispose()
    plain = sqlite3.connect(path, isolation_level=None)
    plain.execute("PRAGMA journal_mode=DELETE")
    plain.execute("PRAGMA synchronous=FULL")
    return plain


def aside_name(path: Path, now: float) -> Path:
    """``<name>.corrupt-<UTC time>`` beside ``path``, not taken yet."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    return target


def move_aside(path: Path, now: float, target: Path | None = None) -> Path:
    """Rename a bad outbox (and its -wal/-shm) to ``target`` (default :func:`aside_name`)."""
    target = target or aside_name(path, now)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    os.replace(path, target)
    return target


def _salvage_tmp(path: Path) -> Path:
    return path.with_name(path.name + ".salvage")


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal"),
              path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def finish_interrupted_salvage(path: Path) -> None:
    """A salvage is written to ``<name>.salvage``, then the damaged file moved aside, then the
    salvage renamed into place. After a crash between the last two steps the outbox is missing
    and the finished salvage waits: put it in place. A salvage left beside a present outbox was
    interrupted before it finished: remove it (it is redone from the damaged file)."""
    tmp = _salvage_tmp(path)
    if not tmp.exists():
        return
    if path.exists():
        _remove(tmp)
        return
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    log.error("interrupted outbox salvage finished", extra={"path": str(path)})


Salvager = Callable[..., Any]  # gateway.salvage.salvage: (source, into, *, now, moved_to) -> report


def salvage_and_replace(path: Path, now: float, salvager: Salvager) -> tuple[Path, Any]:
    """Salvage the damaged ``path`` into a new file with ``salvager``, move the damaged one aside,
    put the new one in its place; returns (where the damaged file went, the salvager's report).
    The salvager is passed in (the daemon passes :func:`gateway.salvage.salvage`): this module is
    the one the salvage reads through, so it must not import it."""
    tmp = _salvage_tmp(path)
    _remove(tmp)
    target = aside_name(path, now)
    report = salvager(path, tmp, now=now, moved_to=str(target))
    move_aside(path, now, target)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return target, report


def open_store(
    path: Path, *, busy_timeout_ms: int, create: bool, recover: Salvager | None, now: float
) -> tuple[Engine, str]:
    """Open (creating if allowed) the outbox file; returns the engine and where a damaged file
    was moved ("" when none was).

    - the file or its directory unusable (permissions, read-only filesystem, I/O error, a full
      disk, a directory in its place): :class:`OutboxInaccessible` naming the path and the fix;
      nothing is moved or created;
    - another process holds it: :class:`~gateway.errors.StorageError`; nothing is moved;
    - the file is damaged: with ``recover`` (the daemon) its readable rows are salvaged into a
      new outbox (:mod:`gateway.salvage`), the damaged file is moved aside and the new one takes
      its place, the salvage recorded in it (reported until acknowledged); without ``recover``
      (the CLI) :class:`OutboxDamaged`, and the file is left as it is."""
    if recover is not None:
        try:
            finish_interrupted_salvage(path)
        except OSError as exc:
            raise inaccessible(path, exc) from exc
    preflight(path, create=create)
    engine = make_engine(path, busy_timeout_ms=busy_timeout_ms)
    try:
        check_and_create(engine)
        return engine, ""
    except StorageError:
        engine.dispose()
        raise
    except (DBAPIError, sqlite3.DatabaseError) as exc:
        engine.dispose()
        kind = classify(exc)
        problem = str(_sqlite_error(exc))
        if kind == "environment":
            raise _environment_error(path, exc) from exc
        if kind == "busy":
            raise StorageError(f"cannot open the outbox {path}: {problem} (another process holds it; "
                               "is a second posgw running?)") from exc
        if recover is None:
            raise OutboxDamaged(path, problem) from exc
    try:
        moved, report = salvage_and_replace(path, now, recover)
    except OSError as exc:
        raise StorageError(
            f"the outbox {path} is damaged ({problem}) and could not be salvaged and moved aside: {exc}; "
            "nothing was moved"
        ) from exc
    log.error("outbox file damaged: readable rows salvaged, the file moved aside", extra={
        "path": str(path), "moved_to": str(moved), "problem": problem, "salvaged": report.salvaged,
        "pending": report.pending, "lost": report.lost, "complete": report.complete,
        "methods": ",".join(report.methods),
        "action": "the gateway reports degraded until acknowledged (posgw outbox ack-salvage or "
                  "POST /v1/outbox/ack-salvage); lost rows: compare the moved file with the tills' records",
    })
    engine = make_engine(path, busy_timeout_ms=busy_timeout_ms)
    try:
        check_and_create(engine)
    except (DBAPIError, sqlite3.DatabaseError) as exc:
        engine.dispose()
        raise StorageError(f"cannot open the salvaged outbox at {path}: {exc}") from exc
    return engine, str(moved)


# ---------------------------------------------------------------- writes (writer thread only)


@dataclass(slots=True)
class NewEvent:
    key: str
    register_id: str
    kind: str
    payload: bytes
    envelope: bytes = b""  # gateway.convert.envelope_body of the event (b"": built when read)


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    register_seq: int  # 0 for a duplicate
    duplicate: bool
    conflicting: bool  # a duplicate key whose stored content differs


# new rows start pending (the one state no action leads into first)
_INSERT_EVENT_ROW = f"(?, ?, ?, ?, ?, ?, '{RowState.PENDING}', 0, ?, ?, '', '', '', '')"
_INSERT_EVENTS = (
    "INSERT INTO events (key, register_id, register_seq, kind, payload, envelope, state, attempts, "
    "created_at, updated_at, last_error, reason, note, result_json) VALUES {}"
)
_UPSERT_REGISTERS = (
    "INSERT INTO registers (register_id, last_seq) VALUES {} "
    "ON CONFLICT (register_id) DO UPDATE SET last_seq = excluded.last_seq"
)
_CHUNK = 500  # host parameters per IN (...) list, well under SQLite's limit


def raw(conn: Connection) -> Any:
    """The sqlite3 connection under ``conn``, for the hot statements (plain SQL, executemany):
    they run inside the transaction ``conn`` began, with none of SQLAlchemy's per-statement work."""
    return conn.connection.driver_connection


def _in_query(cur: Any, sql: str, values: list[str]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(values), _CHUNK):
        chunk = values[i : i + _CHUNK]
        out += cur.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
    return out


def _many_rows(cur: Any, sql: str, row_sql: str, rows: list[tuple[Any, ...]]) -> None:
    """One multi-row VALUES statement per chunk: one SQLite step (one GIL hand-off) per chunk,
    where executemany takes one per row."""
    width = len(rows[0]) if rows else 1
    per = max(1, _CHUNK * 4 // width)
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        cur.execute(sql.format(",".join([row_sql] * len(chunk))), [v for row in chunk for v in row])


def insert_events(
    conn: Connection, new: list[NewEvent], now: float, seqs: dict[str, int] | None = None,
) -> tuple[list[AppendOutcome], dict[str, int]]:
    """Insert a batch within the caller's transaction, in order; a known key (stored before or
    earlier in the same batch) changes nothing. At most four statements per batch, not one per row.

    ``seqs`` is the caller's cache of ``registers.last_seq`` as committed (only the outbox's one
    writer changes it); registers missing from it are read. Returns the outcomes and the
    registers' new last_seq, for the caller to merge into its cache once the transaction commits."""
    cur = raw(conn).cursor()
    known = seqs if seqs is not None else {}
    try:
        stored: dict[str, bytes] = {
            key: bytes(payload)
            for key, payload in _in_query(cur, "SELECT key, payload FROM events WHERE key IN ({})",
                                          list({ev.key for ev in new}))
        }
        missing = list({ev.register_id for ev in new if ev.register_id not in known})
        last: dict[str, int] = {
            r: int(seq)
            for r, seq in _in_query(
                cur, "SELECT register_id, last_seq FROM registers WHERE register_id IN ({})", missing,
            )
        } if missing else {}
        out: list[AppendOutcome] = []
        rows: list[tuple[Any, ...]] = []
        touched: dict[str, int] = {}
        for ev in new:
            if ev.key in stored:
                out.append(AppendOutcome(0, True, stored[ev.key] != ev.payload))
                continue
            reg = ev.register_id
            seq = touched.get(reg) or last.get(reg) or known.get(reg, 0)
            seq += 1
            touched[reg] = seq
            stored[ev.key] = ev.payload
            out.append(AppendOutcome(seq, False, False))
            rows.append((ev.key, reg, seq, ev.kind, ev.payload, ev.envelope, now, now))
        if rows:
            _many_rows(cur, _INSERT_EVENTS, _INSERT_EVENT_ROW, rows)
            _many_rows(cur, _UPSERT_REGISTERS, "(?, ?)", list(touched.items()))
        return out, {**last, **touched}
    finally:
        cur.close()


# Columns an action may set besides state and updated_at (never the identity or the order).
_SETTABLE = frozenset({"last_error", "reason", "note", "result_json", "result", "attempts"})


@cache
def _transition_sql(action: Action, columns: tuple[str, ...], guarded: bool = False) -> str:
    """The UPDATE for ``action``, built from :data:`TRANSITIONS`: the new state is chosen from the
    row's current state and the WHERE clause admits only the table's from-states, so a row changed
    meanwhile by another action is left alone (the statement changes nothing). ``guarded``: the
    row's payload must also still be the one given (a merge meanwhile leaves the row alone)."""
    bad = set(columns) - _SETTABLE
    if bad:
        raise ValueError(f"an outbox state change cannot set {sorted(bad)}")
    moves = TRANSITIONS[action]
    case = " ".join(f"WHEN '{src}' THEN '{dst}'" for src, dst in moves.items())
    sets = "".join(f", {c} = ?" for c in columns)
    froms = ", ".join(f"'{src}'" for src in moves)
    guard = " AND payload = ?" if guarded else ""
    return (
        f"UPDATE events SET state = CASE state {case} END, updated_at = ?{sets} "
        f"WHERE id = ? AND state IN ({froms}){guard}"
    )


def transition(
    conn: Connection, action: Action, rows: Sequence[tuple[int, Mapping[str, Any]]], now: float,
    payloads: Sequence[bytes] | None = None,
) -> int:
    """Apply ``action`` to every (row id, column values) within the caller's transaction; every
    item sets the same columns. The only way a row's state changes. Rows not in one of the
    action's from-states are left alone; with ``payloads`` (one per row), so is a row whose
    payload is no longer that one (a copy merged into it since it was read: the sender's ack is
    for the content it sent). Returns how many rows changed (one executemany)."""
    if not rows:
        return 0
    if payloads is not None and len(payloads) != len(rows):
        raise ValueError(f"{action!s}: one payload per row")
    columns = tuple(sorted(rows[0][1]))
    sql = _transition_sql(action, columns, payloads is not None)
    params = []
    for i, (row_id, values) in enumerate(rows):
        if tuple(sorted(values)) != columns:
            raise ValueError(f"{action!s}: every row must set the same columns {columns}")
        guard = () if payloads is None else (payloads[i],)
        params.append((now, *(values[c] for c in columns), row_id, *guard))
    cur = raw(conn).cursor()
    try:
        cur.executemany(sql, params)
        return int(cur.rowcount)
    finally:
        cur.close()


def deliver_sent(conn: Connection, acks: Sequence[tuple[int, bytes, bytes]], now: float) -> int:
    """The sender's acks, within the caller's transaction: each (row id, the payload sent, the
    core's ``EventAck``) delivers its row (:data:`TRANSITIONS`, the same guarded UPDATE as
    :func:`transition` with ``payloads``: the result stored, last_error cleared) if the row is
    still pending with that payload. The hot path of delivery: parameters built straight from
    the tuples (no column dict per row). Returns how many rows changed."""
    if not acks:
        return 0
    sql = _transition_sql(Action.DELIVER, ("last_error", "result"), True)
    cur = raw(conn).cursor()
    try:
        cur.executemany(sql, [(now, "", result, row_id, payload) for row_id, payload, result in acks])
        return int(cur.rowcount)
    finally:
        cur.close()


def fetch_key(conn: Connection, key: str) -> PendingRow | None:
    """The row stored under ``key`` (any state), within the caller's transaction."""
    cur = raw(conn).cursor()
    try:
        r = cur.execute(f"SELECT {', '.join(c.name for c in events.columns)} FROM events WHERE key = ?",
                        (key,)).fetchone()
    finally:
        cur.close()
    return None if r is None else PendingRow(*r)


def fetch_conflicts(conn: Connection, key: str) -> list[tuple[int, str, bytes]]:
    """(n, state, payload) of every row ``<key>:conflict:<n>`` (one range read of the key index),
    within the caller's transaction."""
    prefix = f"{key}:conflict:"
    cur = raw(conn).cursor()
    try:
        found = cur.execute("SELECT key, state, payload FROM events WHERE key >= ? AND key < ?",
                            (prefix, prefix[:-1] + chr(ord(":") + 1))).fetchall()
    finally:
        cur.close()
    tails = ((k[len(prefix):], state, bytes(payload)) for k, state, payload in found)
    return [(int(n), str(state), payload) for n, state, payload in tails if n.isdigit()]


def replace_payload(
    conn: Connection, row_id: int, payload: bytes, envelope: bytes, now: float, states: Sequence[RowState],
    last_error: str | None = None,
) -> int:
    """Replace the payload and the envelope (both of one event) of row ``row_id`` (same key,
    register and seq) if it is in one of ``states`` (the merge of a later copy into an
    undelivered event), and its last_error when given; returns rows changed."""
    marks = ", ".join("?" * len(states))
    error, error_value = ("", ()) if last_error is None else (", last_error = ?", (last_error[:2000],))
    cur = raw(conn).cursor()
    try:
        cur.execute(f"UPDATE events SET payload = ?, envelope = ?, updated_at = ?{error} "
                    f"WHERE id = ? AND state IN ({marks})",
                    (payload, envelope, now, *error_value, row_id, *(str(s) for s in states)))
        return int(cur.rowcount)
    finally:
        cur.close()


def note_retry(conn: Connection, row_id: int, error: str, now: float) -> None:
    conn.execute(
        update(events)
        .where(events.c.id == row_id, events.c.state == RowState.PENDING.value)
        .values(attempts=events.c.attempts + 1, last_error=error[:2000], updated_at=now)
    )


def prune_delivered(conn: Connection, older_than: float) -> int:
    res = conn.execute(
        events.delete().where(events.c.state == RowState.DELIVERED.value, events.c.updated_at < older_than)
    )
    return int(res.rowcount)


_PUT_STATE = (
    "INSERT INTO driver_state (driver, key, value, updated_at, expires_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (driver, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, "
    "expires_at = excluded.expires_at"
)


def put_state(conn: Connection, driver: str, key: str, value: str, now: float, keep_s: float | None) -> None:
    """Set one driver's key (insert or overwrite); it expires ``keep_s`` after now (None: never)."""
    expires = None if keep_s is None else now + keep_s
    raw(conn).execute(_PUT_STATE, (driver, key, value, now, expires))


def prune_state(conn: Connection, now: float) -> int:
    res = conn.execute(driver_state.delete().where(driver_state.c.expires_at <= now))
    return int(res.rowcount)


# ---------------------------------------------------------------- reads (any thread)


_COLUMNS = ", ".join(c.name for c in events.columns)


class SendRow(NamedTuple):
    """A pending row as :func:`fetch_pending` returns it: only the columns delivery uses. The others
    are known for a pending row (state pending; reason, note and the result empty: an action that
    leads into pending clears the reason, and only the terminal states carry a note or a result)."""

    id: int
    key: str
    register_id: str
    register_seq: int
    kind: str
    payload: bytes
    attempts: int
    created_at: float
    updated_at: float
    last_error: str
    envelope: bytes


_FETCH_PENDING = (
    f"SELECT {', '.join(SendRow._fields)} FROM events WHERE state = '{RowState.PENDING}' AND id > ? "
    "ORDER BY id LIMIT ?"
)


def fetch_pending(conn: Connection, limit: int, after_id: int) -> list[tuple[Any, ...]]:
    """Pending rows after ``after_id`` in id order (plain SQL on the hot path: the sender reads a
    backlog through this), as plain tuples in :class:`SendRow`'s column order (every column read
    and every object built costs, 50,000 times for a backlog of 50,000)."""
    cur = raw(conn).cursor()
    try:
        rows: list[tuple[Any, ...]] = cur.execute(_FETCH_PENDING, (after_id, limit)).fetchall()
        return rows
    finally:
        cur.close()


def fetch_state(conn: Connection, state: RowState, limit: int) -> list[Any]:
    q = select(events).where(events.c.state == RowState(state).value).order_by(events.c.id).limit(limit)
    return list(conn.execute(q).all())


def fetch_row(conn: Connection, row_id: int) -> Any | None:
    return conn.execute(select(events).where(events.c.id == row_id)).first()


_GET_STATE = (
    "SELECT value FROM driver_state WHERE driver = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"
)


def get_state(conn: Connection, driver: str, key: str, now: float) -> str | None:
    """One driver's value for ``key``; None when unknown or expired (even if not pruned yet)."""
    row = raw(conn).execute(_GET_STATE, (driver, key, now)).fetchone()
    return None if row is None else str(row[0])


_STATE_KEYS = (
    "SELECT key, expires_at FROM driver_state WHERE driver = ? AND value != '' "
    "AND (expires_at IS NULL OR expires_at > ?) LIMIT ?"
)


def state_keys(conn: Connection, driver: str, now: float, limit: int) -> list[tuple[str, float | None]]:
    """At most ``limit`` of one driver's live keys that hold a value, with when each expires."""
    return [(str(k), None if e is None else float(e))
            for k, e in raw(conn).execute(_STATE_KEYS, (driver, now, limit)).fetchall()]


_LAST_PROGRESS = (
    f"SELECT max(updated_at) FROM events WHERE state IN ('{RowState.DELIVERED}', '{RowState.REJECTED}')"
)


def last_progress(engine: Engine) -> float:
    """When a row was last delivered or rejected (Unix seconds; 0.0 when none is on record)."""
    with connect(engine, writer=False) as conn:
        value = conn.exec_driver_sql(_LAST_PROGRESS).scalar_one()
        conn.rollback()
    return float(value or 0.0)


_COUNT_STATE = "SELECT count(*) FROM events WHERE state = ?"
_OLDEST_PENDING = f"SELECT created_at FROM events WHERE state = '{RowState.PENDING}' ORDER BY id LIMIT 1"


def counts(conn: Connection) -> tuple[int, float | None, int, int]:
    """(pending count, oldest pending created_at or None, rejected count, waiting count).

    "Oldest" is the created_at of the first pending row in append (id) order: one index step,
    where min(created_at) visited every pending row (20 ms for a 50,000-event backlog, on the
    reader thread the sender reads through, at every /healthz). The writer stamps created_at
    as it assigns ids, so the two agree unless the wall clock stepped back."""
    cur = raw(conn).cursor()
    try:
        (pending,) = cur.execute(_COUNT_STATE, (RowState.PENDING.value,)).fetchone()
        first = cur.execute(_OLDEST_PENDING).fetchone()
        (rejected,) = cur.execute(_COUNT_STATE, (RowState.REJECTED.value,)).fetchone()
        (waiting,) = cur.execute(_COUNT_STATE, (RowState.WAITING.value,)).fetchone()
    finally:
        cur.close()
    return int(pending), None if first is None else float(first[0]), int(rejected), int(waiting)


_UNACKED = "SELECT id, report FROM salvage WHERE acknowledged_at IS NULL ORDER BY id"


def unacknowledged_salvages(conn: Connection) -> list[tuple[int, str]]:
    """(id, report JSON) of every salvage not acknowledged yet (a file without the table: none)."""
    cur = raw(conn).cursor()
    try:
        return [(int(i), str(r)) for i, r in cur.execute(_UNACKED)]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        cur.close()


def acknowledge_salvages(conn: Connection, now: float) -> int:
    """Mark every unacknowledged salvage acknowledged (within the caller's transaction)."""
    cur = raw(conn).cursor()
    try:
        cur.execute("UPDATE salvage SET acknowledged_at = ? WHERE acknowledged_at IS NULL", (now,))
        return int(cur.rowcount)
    finally:
        cur.close()
