"""Storage of the reference core: SQLAlchemy 2 tables, engine set-up, schema create/upgrade.

Owns the on-disk layout (SQLite file or PostgreSQL database) and the transaction discipline:

- every datetime is stored as naive UTC and read back as aware UTC (:class:`UTCDateTime`);
- SQLite runs in WAL mode with a busy timeout, and every transaction starts with
  ``BEGIN IMMEDIATE`` so two writers never interleave (no lost update, no overspend);
- on PostgreSQL the ledger locks customer rows with ``SELECT ... FOR UPDATE`` in id order
  (see :mod:`simulators.core.store`) and retries serialization / deadlock failures;
- :func:`transaction` is the one way to run a unit of work: one DB transaction, retried a
  bounded number of times on transient failures, never partially applied.

The tables themselves are in :mod:`simulators.core.tables` (a leaf module, shared with the
ledger and the fast path); which failures are retried, in :mod:`simulators.core.db_errors`.
The schema is versioned with Alembic (:mod:`simulators.core.schema`, checked and upgraded at
start); PostgreSQL connections are pooled with limits and timeouts (:mod:`simulators.core.pgconf`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import (
    Engine,
    create_engine,
    event,
    select,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from simulators.core import fence, pgconf, schema
from simulators.core.db_errors import is_transient
from simulators.core.fastpath import Sql
from simulators.core.readers import ThreadReaders
from simulators.core.tables import Customer, Meta
from simulators.core.writer import BatchWriter

T = TypeVar("T")


# ---------------------------------------------------------------------------- engine


def make_engine(url: str, immediate: bool = True) -> Engine:
    """Engine for ``url`` with the transaction discipline described in the module docstring.

    On SQLite ``immediate=False`` gives plain deferred ``BEGIN`` (readers in WAL mode run
    beside the writer)."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    # PostgreSQL: pool limits and server-side timeouts from POSGW_CORE_DB_* (simulators.core.pgconf)
    return create_engine(url, **pgconf.current().engine_kwargs())


def create_schema(engine: Engine) -> None:
    """Create or upgrade the schema to this core's revision, or refuse (:mod:`simulators.core.schema`)."""
    schema.prepare(engine)


class Database:
    """The engine plus :meth:`transaction`, the one entry point for a unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.postgres = self.engine.dialect.name == "postgresql"
        sqlite_file = self.engine.dialect.name == "sqlite" and url not in ("sqlite://", "sqlite:///:memory:")
        self.readers = (
            sessionmaker(make_engine(url, immediate=False), expire_on_commit=False)
            if (sqlite_file)
            else self.sessions
        )
        # SQLite has one writer at a time: queue this process's writers on a lock instead of
        # letting them poll the file lock (busy_timeout sleeps), which wastes most of the time.
        self.writer_lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        self.memory = self.engine.dialect.name == "sqlite" and not sqlite_file
        # reads that never wait for the writer (SQLite file, WAL): Calculate runs them inline
        self.inline_reads = sqlite_file
        self.thread_readers = ThreadReaders(str(self.engine.url.database)) if sqlite_file else None
        self.sql = Sql(self.postgres)
        self._retrying = retry(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(6),
            wait=wait_random_exponential(multiplier=0.01, max=0.2),
            reraise=True,
        )
        create_schema(self.engine)
        # SQLite: concurrent writes are grouped into shared transactions (simulators.core.writer);
        # PostgreSQL keeps one transaction per unit of work, in parallel, under row locks.
        self.batcher = None if self.postgres else BatchWriter(self)

    async def write(self, work: Callable[[Session], T]) -> T:
        """Run write ``work`` without blocking the event loop: batched on SQLite (group commit,
        one savepoint per unit), else one retried transaction in a worker thread."""
        if self.batcher is None:
            return await asyncio.to_thread(self.transaction, work)
        result: T = await asyncio.wrap_future(self.batcher.submit(work))
        return result

    @contextlib.contextmanager
    def raw_reader(self) -> Iterator[Any]:
        """A DBAPI cursor for one-statement reads (SQLite: autocommit, beside the writer)."""
        if self.thread_readers is not None:  # SQLite file: this thread's own read connection
            yield self.thread_readers.cursor()
            return
        if self.memory:  # one shared connection: do not read in the middle of a writer's work
            with self.writer_lock, self.engine.connect() as conn:
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                try:
                    yield cursor
                finally:
                    cursor.close()
            return
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool (which rolls back: reads leave nothing open)

    def transaction(self, work: Callable[[Session], T], write: bool = True) -> T:
        """Run ``work`` in one transaction; retry transient failures a bounded number of times.

        ``write=False`` is for read-only work (no row is changed): on SQLite it does not take
        the writer's lock.
        """

        def attempt() -> T:
            if not write:
                with self.readers() as session, session.begin():
                    return work(session)
            with self.writer_lock, self.sessions() as session, session.begin():
                try:
                    lease = fence.CURRENT.get() if self.postgres else None
                    if lease is not None:  # a stream's event: its register's lease first
                        fence.check(session, *lease)
                    return work(session)
                except BaseException:
                    self.sql.lots.clear()  # rolled back: its lot ids may be reused
                    raise

        return self._retrying(attempt)()

    def meta(self, key: str) -> str | None:
        with self.sessions() as s, s.begin():
            row = s.get(Meta, key)
            return None if row is None else row.value

    def dispose(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.thread_readers is not None:
            self.thread_readers.close()
        self.engine.dispose()
        if self.readers is not self.sessions:
            bind = self.readers.kw.get("bind")
            if isinstance(bind, Engine):
                bind.dispose()


def lock_customers(session: Session, ids: list[int], postgres: bool) -> dict[int, Customer]:
    """Load (and on PostgreSQL lock, in id order) the given customers."""
    stmt = (
        select(Customer)
        .where(Customer.id.in_(sorted(set(ids))))
        .order_by(Customer.id)
        .execution_options(populate_existing=True)
    )
    if postgres:
        stmt = stmt.with_for_update()
    return {c.id: c for c in session.scalars(stmt)}
