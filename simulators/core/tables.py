"""The reference core's tables (SQLAlchemy 2 declarative) and the schema version: a leaf module
that imports nothing from :mod:`simulators.core`, so the ledger, identification and the fast
path can share the tables without importing :mod:`simulators.core.db` (engine, transactions).

Every datetime is stored as naive UTC and read back as aware UTC (:class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2  # meta.schema_version; 2: migrations by Alembic (simulators.core.schema)


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


class ConfirmationCode(Base):
    """The live confirmation code of a phone (:mod:`simulators.core.codes`): only its salted
    SHA-256 is kept; wrong tries, the lock and the send counters that rate-limit the phone."""

    __tablename__ = "confirmation_codes"
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), default="")
    salt: Mapped[str] = mapped_column(String(32), default="")
    purpose: Mapped[str] = mapped_column(String(16), default="")
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tries: Mapped[int] = mapped_column(Integer, default=0)  # wrong tries since the last lock
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the hour sends are counted in
    sent_in_window: Mapped[int] = mapped_column(Integer, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class GrantMark(Base):
    """Once-only grants: birthday per year, win-back per absence, review per platform."""

    __tablename__ = "grant_marks"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    lot_id: Mapped[int | None] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class RegisterLease(Base):
    """Which event stream owns a (gateway, register) now (:mod:`simulators.core.fence`)."""

    __tablename__ = "register_leases"
    lease_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    stream: Mapped[str] = mapped_column(String(40))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
