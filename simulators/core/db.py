"""Storage of the reference core: SQLAlchemy 2 tables, engine set-up, schema create/upgrade.

Owns the on-disk layout (SQLite file or PostgreSQL database) and the transaction discipline:

- every datetime is stored as naive UTC and read back as aware UTC (:class:`UTCDateTime`);
- SQLite runs in WAL mode with a busy timeout, and every transaction starts with
  ``BEGIN IMMEDIATE`` so two writers never interleave (no lost update, no overspend);
- on PostgreSQL the ledger locks customer rows with ``SELECT ... FOR UPDATE`` in id order
  (see :mod:`simulators.core.store`) and retries serialization / deadlock failures;
- :func:`transaction` is the one way to run a unit of work: one DB transaction, retried a
  bounded number of times on transient failures, never partially applied.

Schema version lives in table ``meta``; :func:`create_schema` creates missing tables and
records the version (new columns would be added here, one ``ALTER`` per version step).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from simulators.core.readers import ThreadReaders
from simulators.core.writer import BatchWriter

SCHEMA_VERSION = 1
T = TypeVar("T")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC out; stored naive UTC (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime passed to the core's storage")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone: Mapped[str | None] = mapped_column(String(32), unique=True)
    referral_code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    gender: Mapped[str] = mapped_column(String(16), default="")
    birth_date: Mapped[str] = mapped_column(String(10), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    extra_dates: Mapped[str] = mapped_column(Text, default="")  # comma-separated YYYY-MM-DD
    channel: Mapped[str] = mapped_column(String(64), default="")
    inviter_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    store_id: Mapped[str] = mapped_column(String(64), default="")
    cashier_id: Mapped[str] = mapped_column(String(64), default="")
    cashier_name: Mapped[str] = mapped_column(String(200), default="")
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    tier: Mapped[str] = mapped_column(String(64), default="")
    debt: Mapped[int] = mapped_column(BigInteger, default=0)
    total_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    effective_invited: Mapped[int] = mapped_column(Integer, default=0)
    first_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Card(Base):
    __tablename__ = "cards"
    card: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)


class WelcomedPhone(Base):
    """Phones that ever received the welcome bonus (once per phone number ever)."""

    __tablename__ = "welcomed_phones"
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class LotRow(Base):
    """A parcel of points. ``remaining`` is still open; 0 once spent, clawed or expired."""

    __tablename__ = "lots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    source: Mapped[str] = mapped_column(String(32))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    available_from: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    certificate: Mapped[bool] = mapped_column(Boolean, default=False)
    cap_bp: Mapped[int] = mapped_column(Integer, default=0)
    operation_id: Mapped[int | None] = mapped_column(Integer)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)  # marked by RunJobs
    __table_args__ = (Index("ix_lots_customer_open", "customer_id", "remaining"),)


class Movement(Base):
    """Every change of points (signed), for reports: source is accrual, referral, redeem, ..."""

    __tablename__ = "movements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    operation_id: Mapped[int | None] = mapped_column(Integer, index=True)
    lot_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    points: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    cashier_id: Mapped[str] = mapped_column(String(64), default="")


class Operation(Base):
    """A sale, refund, cancel or grant, keyed for idempotency by (kind, key).

    ``result`` is the serialized proto answer replayed on a repeated key; ``state`` is JSON
    private to the ledger (sold lines, debits, payouts, cumulative refund state).
    """

    __tablename__ = "operations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(Integer, index=True)
    sale_id: Mapped[int | None] = mapped_column(Integer, index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    store_id: Mapped[str] = mapped_column(String(64), default="")
    terminal_id: Mapped[str] = mapped_column(String(64), default="")
    register_id: Mapped[str] = mapped_column(String(64), default="")
    cashier_id: Mapped[str] = mapped_column(String(64), default="")
    cashier_name: Mapped[str] = mapped_column(String(200), default="")
    gross: Mapped[int] = mapped_column(BigInteger, default=0)
    paid: Mapped[int] = mapped_column(BigInteger, default=0)
    discount: Mapped[int] = mapped_column(BigInteger, default=0)  # points paid + instant, minor
    redeemed: Mapped[int] = mapped_column(BigInteger, default=0)
    accrued: Mapped[int] = mapped_column(BigInteger, default=0)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    refunded: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(Text, default="{}")
    result: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    __table_args__ = (Index("ux_operations_kind_key", "kind", "key", unique=True),)


class Hold(Base):
    __tablename__ = "holds"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    points: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default="live")  # live, consumed, released
    register_id: Mapped[str] = mapped_column(String(64), default="")


class AppCodeRow(Base):
    __tablename__ = "app_codes"
    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_by: Mapped[int | None] = mapped_column(Integer)  # sale operation that consumed it


class Otp(Base):
    __tablename__ = "otps"
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    code: Mapped[str] = mapped_column(String(8))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GrantMark(Base):
    """Once-only grants: birthday per year, win-back per absence, review per platform."""

    __tablename__ = "grant_marks"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    lot_id: Mapped[int | None] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


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
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create missing tables and record the schema version; refuse a newer schema."""
    Base.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        row = s.get(Meta, "schema_version")
        if row is None:
            s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        elif int(row.value) > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {row.value} is newer than this core ({SCHEMA_VERSION}); "
                "upgrade posgw or point --db at another database"
            )
        elif int(row.value) < SCHEMA_VERSION:  # future upgrades go here, one step per version
            row.value = str(SCHEMA_VERSION)


try:  # the hot paths (simulators.core.fastpath) raise the driver's own exceptions
    import psycopg

    _RAW_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error)
    _RAW_TRANSIENT: tuple[type[BaseException], ...] = (
        sqlite3.IntegrityError,
        sqlite3.OperationalError,
        psycopg.IntegrityError,
        psycopg.OperationalError,
    )
except ImportError:  # pragma: no cover - PostgreSQL support not installed
    _RAW_ERRORS = (sqlite3.Error,)
    _RAW_TRANSIENT = (sqlite3.IntegrityError, sqlite3.OperationalError)


def is_storage_error(exc: BaseException) -> bool:
    """A database failure, wrapped by SQLAlchemy or raised by the driver itself."""
    return isinstance(exc, (DBAPIError, *_RAW_ERRORS))


def is_transient(exc: BaseException) -> bool:
    """Serialization failures, deadlocks, locked SQLite files, duplicate-key races."""
    if isinstance(exc, (IntegrityError, OperationalError, *_RAW_TRANSIENT)):
        return True  # e.g. a concurrent insert of the same key: the retry sees it and replays
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(exc, (DBAPIError, *_RAW_ERRORS)):
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return code in ("40001", "40P01", "55P03")
    return False


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
        from simulators.core.fastpath import Sql  # fastpath reads these tables: import cycle

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
