"""Hot reads of the reference core on the DBAPI connection (no ORM, no SQL compilation).

Calculate and Commit read the same thing on every call: the customer's counters, their lots
with points left and the points held by other tills. Through the ORM that cost milliseconds
of Python per call; here it is one hand-written SELECT executed on the DBAPI cursor.

Invariants:
- the SQL is written once with ``?`` placeholders and rewritten to ``%s`` for psycopg;
- datetimes are bound and read exactly as :class:`simulators.core.db.UTCDateTime` stores them
  (naive UTC; SQLite text ``YYYY-MM-DD HH:MM:SS.ffffff``), so these reads and the ORM agree;
- an account read is one SELECT statement: one consistent snapshot even without an explicit
  transaction (SQLite readers run in autocommit mode);
- identification here mirrors :func:`simulators.core.identify.resolve` for phone (without an
  SMS code), card and customer id; other kinds return None and the caller takes the ORM path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.program import Program
from gateway.rules.types import AccountState, Lot
from simulators.core import identify

_ACCOUNT = """
SELECT c.id, c.name, c.tier, c.debt, c.total_spent, c.purchase_count, c.effective_invited, c.blocked,
  (SELECT COALESCE(SUM(h.points), 0) FROM holds h
    WHERE h.customer_id = c.id AND h.state = 'live' AND h.expires_at > ? AND h.id <> ?),
  l.id, l.source, l.remaining, l.created_at, l.available_from, l.expires_at, l.certificate, l.cap_bp
FROM customers c LEFT JOIN lots l ON l.customer_id = c.id AND l.remaining > 0
WHERE {where}
"""
_WHERE = {
    "phone": "c.phone = ?",
    "customer_id": "c.id = ?",
    "card": "c.id = (SELECT cards.customer_id FROM cards WHERE cards.card = ?)",
}
_SALE = "SELECT id, content_hash, result FROM operations WHERE kind = 'sale' AND key = ?"
_OP_COLUMNS = (
    "kind, key, content_hash, customer_id, sale_id, occurred_at, created_at, store_id, terminal_id,"
    " register_id, cashier_id, cashier_name, gross, paid, discount, redeemed, accrued, cancelled,"
    " refunded, state, result"
)
_INSERT_OP = f"INSERT INTO operations ({_OP_COLUMNS}) VALUES ({', '.join(['?'] * 21)}) RETURNING id"
_FINISH_OP = "UPDATE operations SET state = ?, result = ? WHERE id = ?"
_INSERT_LOT = (
    "INSERT INTO lots (customer_id, source, points, remaining, created_at, available_from, expires_at,"
    " certificate, cap_bp, operation_id, expired) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_INSERT_MOVEMENT = (
    "INSERT INTO movements (customer_id, operation_id, lot_id, kind, points, at, cashier_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

_dt_cache: dict[Any, datetime] = {}


def read_dt(value: Any) -> datetime:
    """A stored datetime (SQLite text or naive PostgreSQL value) -> aware UTC (cached)."""
    dt = _dt_cache.get(value)
    if dt is None:
        dt = (datetime.fromisoformat(value) if isinstance(value, str) else value).replace(tzinfo=UTC)
        if len(_dt_cache) > 8192:
            _dt_cache.clear()
        _dt_cache[value] = dt
    return dt


class Sql:
    """The statements of this module in one dialect's placeholder style."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.account = {kind: self._q(_ACCOUNT.format(where=w)) for kind, w in _WHERE.items()}
        self.sale = self._q(_SALE)
        self.insert_op = self._q(_INSERT_OP)
        self.finish_op = self._q(_FINISH_OP)
        self.insert_lot = self._q(_INSERT_LOT)
        self.insert_movement = self._q(_INSERT_MOVEMENT)

    def _q(self, text: str) -> str:
        return text.replace("?", "%s") if self.postgres else text

    def dt(self, value: datetime) -> Any:
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive if self.postgres else naive.isoformat(" ", "microseconds")


@dataclass(frozen=True, slots=True)
class Account:
    """A customer as Calculate / Commit see it: counters, open lots, others' holds."""

    id: int
    name: str
    tier: str
    debt: int
    total_spent: int
    purchase_count: int
    effective_invited: int
    blocked: bool
    held: int
    lots: tuple[Lot, ...]
    method: str
    otp_ok: bool | None

    def state(self, program: Program) -> AccountState:
        negative = program.allow_negative_balance
        return AccountState(
            customer_id=str(self.id),
            tier=self.tier,
            lots=self.lots,
            debt=0 if negative else self.debt,
            held_by_others=self.held,
            total_spent=self.total_spent,
            purchase_count=self.purchase_count,
            effective_invited=self.effective_invited,
            method=self.method,
            blocked=self.blocked,
            negative_balance=-self.debt if negative else 0,
        )


def key_of(program: Program, ref: pb.CustomerRef) -> tuple[str, Any, str] | None:
    """(where kind, parameter, method) for the kinds this module identifies, else None.

    Raises UNKNOWN_CUSTOMER for a phone / customer id that cannot match anybody."""
    kind = ref.WhichOneof("id")
    if kind == "phone" and not ref.otp:
        phone = identify.phone_or_none(ref.phone)
        if phone is None:
            raise identify.unknown("this phone")
        return "phone", phone, identify.phone_method(program)
    if kind == "card":
        return "card", ref.card.strip(), "card"
    if kind == "customer_id":
        try:
            cid = int(ref.customer_id)
        except ValueError:
            cid = -1
        if not 0 < cid < 2**63:
            raise identify.unknown("this customer id")
        return "customer_id", cid, "app_code"
    return None


_UNKNOWN = {"phone": "this phone", "card": "this card", "customer_id": "this customer id"}


def read_account(
    cursor: Any, sql: Sql, program: Program, ref: pb.CustomerRef, now: datetime, own_hold: str = ""
) -> Account | None:
    """The account ``ref`` names, read with ``cursor``; None when ``ref`` needs the ORM path."""
    key = key_of(program, ref)
    if key is None:
        return None
    kind, param, method = key
    cursor.execute(sql.account[kind], (sql.dt(now), own_hold, param))
    rows = cursor.fetchall()
    if not rows:
        raise identify.unknown(_UNKNOWN[kind])
    first = rows[0]
    lots = tuple(
        Lot(
            str(r[9]),
            r[10],
            r[11],
            read_dt(r[12]),
            read_dt(r[13]),
            None if r[14] is None else read_dt(r[14]),
            bool(r[15]),
            r[16],
        )
        for r in rows
        if r[9] is not None
    )
    return Account(
        id=first[0],
        name=first[1],
        tier=first[2],
        debt=first[3],
        total_spent=first[4],
        purchase_count=first[5],
        effective_invited=first[6],
        blocked=bool(first[7]),
        held=int(first[8]),
        lots=lots,
        method=method,
        otp_ok=None,
    )


def find_sale(cursor: Any, sql: Sql, key: str) -> tuple[int, str, bytes] | None:
    """(operation id, content hash, stored result) of the sale with idempotency ``key``."""
    cursor.execute(sql.sale, (key,))
    row = cursor.fetchone()
    return None if row is None else (int(row[0]), str(row[1]), bytes(row[2]))


@dataclass(frozen=True, slots=True)
class NewOperation:
    """The columns of a new ``operations`` row (state and result are written by :func:`finish`)."""

    kind: str
    key: str
    content_hash: str
    customer_id: int | None
    occurred_at: datetime
    created_at: datetime
    store_id: str
    terminal_id: str
    register_id: str
    cashier_id: str
    cashier_name: str
    gross: int
    paid: int
    discount: int
    redeemed: int
    accrued: int
    sale_id: int | None = None


def insert_operation(cursor: Any, sql: Sql, op: NewOperation) -> int:
    """Insert ``op`` (state "{}", no result yet) and return its id."""
    cursor.execute(
        sql.insert_op,
        (
            op.kind,
            op.key,
            op.content_hash,
            op.customer_id,
            op.sale_id,
            sql.dt(op.occurred_at),
            sql.dt(op.created_at),
            op.store_id,
            op.terminal_id,
            op.register_id,
            op.cashier_id,
            op.cashier_name,
            op.gross,
            op.paid,
            op.discount,
            op.redeemed,
            op.accrued,
            False,
            False,
            "{}",
            b"",
        ),
    )
    return int(cursor.fetchone()[0])


def finish_operation(cursor: Any, sql: Sql, op_id: int, state: str, result: bytes) -> None:
    cursor.execute(sql.finish_op, (state, result, op_id))


def insert_lot(
    cursor: Any,
    sql: Sql,
    customer_id: int,
    source: str,
    points: int,
    *,
    at: datetime,
    available_from: datetime,
    expires_at: datetime | None,
    op_id: int | None,
) -> int:
    """A new ordinary lot of ``points`` (all remaining); returns its id."""
    cursor.execute(
        sql.insert_lot,
        (
            customer_id,
            source,
            points,
            points,
            sql.dt(at),
            sql.dt(available_from),
            None if expires_at is None else sql.dt(expires_at),
            False,
            0,
            op_id,
            False,
        ),
    )
    return int(cursor.fetchone()[0])


def insert_movements(
    cursor: Any, sql: Sql, rows: list[tuple[int, int | None, str, int, datetime, str]]
) -> None:
    """Movements (customer, operation, kind, signed points, at, cashier), no lot ids."""
    if rows:
        params = [(c, op, None, kind, n, sql.dt(at), cashier) for c, op, kind, n, at, cashier in rows]
        cursor.executemany(sql.insert_movement, params)
