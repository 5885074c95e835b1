"""Hot reads of the reference core on the DBAPI connection (no ORM, no SQL compilation).

Calculate and Commit read the same thing on every call: the customer's counters, their lots
with points left and the points held by other tills. Through the ORM that cost milliseconds
of Python per call; here it is one hand-written SELECT executed on the DBAPI cursor.

Invariants:
- the SQL is written once with ``?`` placeholders and rewritten to ``%s`` for psycopg;
- datetimes are bound and read exactly as :class:`simulators.core.tables.UTCDateTime` stores them
  (naive UTC; SQLite text ``YYYY-MM-DD HH:MM:SS.ffffff``), so these reads and the ORM agree;
- an account read is one SELECT statement: one consistent snapshot even without an explicit
  transaction (SQLite readers run in autocommit mode). It returns the customer's counters and
  the (id, remaining) of every lot with points left; the other columns of a lot never change
  after its insert, so they come from :class:`LotCache` (filled by a second SELECT for the ids
  it does not know, and by :func:`insert_lot`);
- the cache may hold a lot that a rolled-back transaction inserted (its id can be reused on
  SQLite): every write path clears it when it rolls anything back (:meth:`LotCache.clear`);
- identification here mirrors :func:`simulators.core.identify.resolve` for phone (without an
  SMS code), card and customer id; other kinds return None and the caller takes the ORM path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.calc import available_by
from gateway.rules.program import Program
from gateway.rules.types import AccountState, Lot, RuleViolation
from simulators.core import identify

# one row for the customer (lot columns NULL), one per lot with points left (customer columns NULL)
_ACCOUNT = """
SELECT NULL, NULL, NULL, c.id, c.name, c.tier, c.debt, c.total_spent, c.purchase_count,
  c.effective_invited, c.blocked,
  (SELECT COALESCE(SUM(h.points), 0) FROM holds h
    WHERE h.customer_id = c.id AND h.state = 'live' AND h.expires_at > ? AND h.id <> ?),
  c.inviter_id, c.first_purchase_at, c.last_purchase_at
FROM customers c WHERE {where}
UNION ALL
SELECT l.id, l.remaining, l.customer_id,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM lots l WHERE l.customer_id = (SELECT c.id FROM customers c WHERE {where}) AND l.remaining > 0
"""
_LOT_DETAILS = (
    "SELECT id, customer_id, source, created_at, available_from, expires_at, certificate, cap_bp"
    " FROM lots WHERE id IN ({marks})"
)
_CONSUME_HOLD = "UPDATE holds SET state = 'consumed' WHERE id = ? AND customer_id = ? AND state = 'live'"
_TAKE = "UPDATE lots SET remaining = remaining - ? WHERE id = ? AND remaining >= ?"
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


class LotCache:
    """Lots by id with the points last seen; only ``remaining`` of a lot ever changes.

    Shared by the threads of one :class:`simulators.core.db.Database` (plain dict operations,
    atomic under the GIL); bounded: cleared when it grows past ``limit`` entries."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.by_id: dict[int, tuple[int, Lot]] = {}  # lot id -> (customer id, lot)

    def put(self, lot_id: int, customer_id: int, lot: Lot) -> None:
        if len(self.by_id) >= self.limit:
            self.by_id.clear()
        self.by_id[lot_id] = (customer_id, lot)

    def clear(self) -> None:
        """After any rollback: a lot id the cache knows may be reused by another insert."""
        self.by_id.clear()


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
        self.take = self._q(_TAKE)
        self.consume_hold = self._q(_CONSUME_HOLD)
        self.lots = LotCache()

    def lot_details(self, count: int) -> str:
        return self._q(_LOT_DETAILS.format(marks=", ".join(["?"] * count)))

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
    inviter_id: int | None = None
    first_purchase_at: Any = None  # as stored (see module docstring)
    last_purchase_at: Any = None

    def state(self, program: Program, at: datetime, now: datetime) -> AccountState:
        """The rule engine's view for a receipt at ``at`` processed at ``now``."""
        negative = program.allow_negative_balance
        return AccountState(
            customer_id=str(self.id),
            tier=self.tier,
            lots=available_by(self.lots, at, max(at, now)),
            debt=0 if negative else self.debt,
            held_by_others=self.held,
            total_spent=self.total_spent,
            purchase_count=self.purchase_count,
            effective_invited=self.effective_invited,
            method=self.method,
            blocked=self.blocked,
            negative_balance=-self.debt if negative else 0,
        )


def is_fast_ref(ref: pb.CustomerRef) -> bool:
    """True for the references :func:`key_of` identifies (no ORM, no write)."""
    kind = ref.WhichOneof("id")
    return kind in ("card", "customer_id") or (kind == "phone" and not ref.otp)


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
    cursor.execute(sql.account[kind], (sql.dt(now), own_hold, param, param))
    head = None
    lots: list[Lot] = []
    missing: list[tuple[int, int]] = []
    cache = sql.lots.by_id
    for r in cursor.fetchall():
        lot_id = r[0]
        if lot_id is None:
            head = r
            continue
        hit = cache.get(lot_id)
        if hit is None or hit[0] != r[2]:
            missing.append((lot_id, r[1]))
            continue
        lot = hit[1]
        if lot.points != r[1]:
            lot = Lot(lot.lot_id, lot.source, r[1], lot.created, lot.available_from, lot.expires_at,
                      lot.certificate, lot.cap_bp)  # fmt: skip
            cache[lot_id] = (r[2], lot)
        lots.append(lot)
    if head is None:
        raise identify.unknown(_UNKNOWN[kind])
    if missing:
        lots.extend(_lot_details(cursor, sql, missing))
    return Account(
        id=head[3],
        name=head[4],
        tier=head[5],
        debt=head[6],
        total_spent=head[7],
        purchase_count=head[8],
        effective_invited=head[9],
        blocked=bool(head[10]),
        held=int(head[11]),
        lots=tuple(lots),
        method=method,
        otp_ok=None,
        inviter_id=head[12],
        first_purchase_at=head[13],
        last_purchase_at=head[14],
    )


def _lot_details(cursor: Any, sql: Sql, wanted: list[tuple[int, int]]) -> list[Lot]:
    """Lots for (id, remaining) pairs the cache did not know; cached for the next read."""
    remaining = dict(wanted)
    out: list[Lot] = []
    ids = list(remaining)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        cursor.execute(sql.lot_details(len(chunk)), chunk)
        for r in cursor.fetchall():
            lot = Lot(
                str(r[0]),
                r[2],
                remaining[r[0]],
                read_dt(r[3]),
                read_dt(r[4]),
                None if r[5] is None else read_dt(r[5]),
                bool(r[6]),
                r[7],
            )
            sql.lots.put(r[0], r[1], lot)
            out.append(lot)
    return out


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
    lot_id = int(cursor.fetchone()[0])
    exp = None if expires_at is None else expires_at.astimezone(UTC)
    lot = Lot(str(lot_id), source, points, at.astimezone(UTC), available_from.astimezone(UTC), exp, False, 0)
    sql.lots.put(lot_id, customer_id, lot)
    return lot_id


def insert_movements(
    cursor: Any, sql: Sql, rows: list[tuple[int, int | None, str, int, datetime, str]]
) -> None:
    """Movements (customer, operation, kind, signed points, at, cashier), no lot ids."""
    if rows:
        params = [(c, op, None, kind, n, sql.dt(at), cashier) for c, op, kind, n, at, cashier in rows]
        cursor.executemany(sql.insert_movement, params)


def take_lots(cursor: Any, sql: Sql, debits: list[tuple[int, int]]) -> None:
    """Debit (lot id, points) pairs; refuses (INSUFFICIENT_POINTS) if a lot has less left."""
    for lot, n in debits:
        cursor.execute(sql.take, (n, lot, n))
        if cursor.rowcount != 1:
            raise RuleViolation("INSUFFICIENT_POINTS", "points changed under this receipt; calculate again")


def consume_hold(cursor: Any, sql: Sql, hold_id: str, customer_id: int) -> None:
    """Mark the buyer's live hold consumed (a hold of somebody else, or not live, stays)."""
    cursor.execute(sql.consume_hold, (hold_id, customer_id))
