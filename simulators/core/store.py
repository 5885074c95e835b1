"""Account primitives of the reference core: lots, credits, debits, holds, balances, tiers.

Every function here runs inside a caller's transaction (:meth:`Database.transaction`) with
the customer rows already locked (:func:`simulators.core.db.lock_customers`). Invariants:

- a lot's ``remaining`` is never negative; a balance is the sum of open lots (not expired at
  the time asked, already available);
- every credit pays ``debt`` first (loyalty-rules.md §2.3), so debt > 0 only while the
  customer has no open points;
- debits take lots in the rule engine's spending order; what cannot be taken becomes debt
  (with ``allow_negative_balance`` the same debt is shown as a negative balance);
- every change of points writes one :class:`Movement` (the reports read them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from gateway.rules import calc
from gateway.rules.program import Program
from gateway.rules.tiers import tier_for
from gateway.rules.types import AccountState, Lot, RuleViolation
from simulators.core.tables import Customer, Hold, LotRow, Movement


def to_lot(row: LotRow) -> Lot:
    return Lot(
        lot_id=str(row.id),
        source=row.source,
        points=row.remaining,
        created=row.created_at,
        available_from=row.available_from,
        expires_at=row.expires_at,
        certificate=row.certificate,
        cap_bp=row.cap_bp,
    )


def lot_rows(session: Session, customer_id: int) -> list[LotRow]:
    """Every lot with points left (open or not), oldest first."""
    stmt = select(LotRow).where(LotRow.customer_id == customer_id, LotRow.remaining > 0).order_by(LotRow.id)
    return list(session.scalars(stmt))


def open_rows(session: Session, customer_id: int, at: datetime) -> list[LotRow]:
    """Open lots at ``at`` in spending order."""
    rows = {str(r.id): r for r in lot_rows(session, customer_id)}
    lots = calc.open_lots([to_lot(r) for r in rows.values()], at)
    return [rows[lot.lot_id] for lot in calc.spending_order(lots)]


def held_points(session: Session, customer_id: int, now: datetime, exclude: str = "") -> int:
    stmt = select(func.coalesce(func.sum(Hold.points), 0)).where(
        Hold.customer_id == customer_id,
        Hold.state == "live",
        Hold.expires_at > now,
        Hold.id != exclude,
    )
    return int(session.scalar(stmt) or 0)


@dataclass(frozen=True, slots=True)
class Balance:
    ordinary: int
    certificate: int
    debt: int
    held: int
    negative: bool  # allow_negative_balance: debt shown as a negative balance

    @property
    def total(self) -> int:
        return self.ordinary + self.certificate - (self.debt if self.negative else 0)

    @property
    def shown_debt(self) -> int:
        return 0 if self.negative else self.debt


def balance(session: Session, program: Program, cust: Customer, at: datetime, now: datetime) -> Balance:
    """Open points at ``at`` by kind (one aggregate query), debt and live holds at ``now``."""
    session.flush()
    stmt = (
        select(LotRow.certificate, func.coalesce(func.sum(LotRow.remaining), 0))
        .where(
            LotRow.customer_id == cust.id,
            LotRow.remaining > 0,
            LotRow.available_from <= at,
            or_(LotRow.expires_at.is_(None), LotRow.expires_at > at),
        )
        .group_by(LotRow.certificate)
    )
    sums = {bool(cert): int(total) for cert, total in session.execute(stmt)}
    return Balance(
        ordinary=sums.get(False, 0),
        certificate=sums.get(True, 0),
        debt=cust.debt,
        held=held_points(session, cust.id, now),
        negative=program.allow_negative_balance,
    )


_LOT_COLUMNS = (
    LotRow.id,
    LotRow.source,
    LotRow.remaining,
    LotRow.created_at,
    LotRow.available_from,
    LotRow.expires_at,
    LotRow.certificate,
    LotRow.cap_bp,
)


def lots_of(session: Session, customer_id: int) -> tuple[Lot, ...]:
    """Every lot with points left, as rule-engine Lots (plain rows: no ORM objects built)."""
    stmt = select(*_LOT_COLUMNS).where(LotRow.customer_id == customer_id, LotRow.remaining > 0)
    return tuple(
        Lot(
            lot_id=str(r[0]),
            source=r[1],
            points=r[2],
            created=r[3],
            available_from=r[4],
            expires_at=r[5],
            certificate=bool(r[6]),
            cap_bp=r[7],
        )
        for r in session.execute(stmt)
    )


_TAKE = (
    update(LotRow)
    .where(LotRow.id == bindparam("lot"), LotRow.remaining >= bindparam("n"))
    .values(remaining=LotRow.remaining - bindparam("n"))
)


def take_lots(session: Session, debits: list[tuple[int, int]]) -> None:
    """Debit (lot id, points) pairs; refuses (INSUFFICIENT_POINTS) if a lot has less left."""
    for lot, n in debits:
        res = session.connection().execute(_TAKE, {"lot": lot, "n": n})
        if getattr(res, "rowcount", 1) != 1:
            raise RuleViolation("INSUFFICIENT_POINTS", "points changed under this receipt; calculate again")


def account_state(
    session: Session,
    program: Program,
    cust: Customer,
    *,
    at: datetime,
    now: datetime,
    method: str,
    own_hold: str = "",
) -> AccountState:
    lots = calc.available_by(lots_of(session, cust.id), at, max(at, now))
    return AccountState(
        customer_id=str(cust.id),
        tier=cust.tier,
        lots=lots,
        debt=0 if program.allow_negative_balance else cust.debt,
        held_by_others=held_points(session, cust.id, now, exclude=own_hold),
        total_spent=cust.total_spent,
        purchase_count=cust.purchase_count,
        effective_invited=cust.effective_invited,
        method=method,
        blocked=cust.blocked,
        negative_balance=-cust.debt if program.allow_negative_balance else 0,
    )


def record(
    session: Session,
    cust_id: int,
    kind: str,
    points: int,
    at: datetime,
    *,
    op_id: int | None = None,
    lot_id: int | None = None,
    cashier_id: str = "",
) -> None:
    session.add(
        Movement(
            customer_id=cust_id,
            operation_id=op_id,
            lot_id=lot_id,
            kind=kind,
            points=points,
            at=at,
            cashier_id=cashier_id,
        )
    )


def credit(
    session: Session,
    cust: Customer,
    points: int,
    source: str,
    *,
    at: datetime,
    expires_at: datetime | None,
    available_from: datetime | None = None,
    op_id: int | None = None,
    certificate: bool = False,
    cap_bp: int = 0,
    cashier_id: str = "",
    pay_debt: bool = True,
) -> tuple[LotRow | None, int]:
    """Credit ``points``: repay debt first, put the rest in a new lot. -> (lot, debt repaid)."""
    if points <= 0:
        return None, 0
    repaid = min(points, cust.debt) if pay_debt else 0
    cust.debt -= repaid
    rest = points - repaid
    record(session, cust.id, source, points, at, op_id=op_id, cashier_id=cashier_id)
    if rest == 0:
        return None, repaid
    row = LotRow(
        customer_id=cust.id,
        source=source,
        points=rest,
        remaining=rest,
        created_at=at,
        available_from=available_from or at,
        expires_at=expires_at,
        certificate=certificate,
        cap_bp=cap_bp,
        operation_id=op_id,
        expired=False,
    )
    session.add(row)  # flushed with the transaction (callers needing row.id flush first)
    return row, repaid


def take_from_lot(row: LotRow, points: int) -> int:
    took = min(points, row.remaining)
    row.remaining -= took
    return took


def debit(
    session: Session,
    cust: Customer,
    points: int,
    kind: str,
    *,
    at: datetime,
    op_id: int | None = None,
    first: LotRow | None = None,
    cashier_id: str = "",
) -> int:
    """Take ``points`` (``first`` lot first, then spending order); the rest becomes debt.

    Returns the shortfall (points that became debt).
    """
    if points <= 0:
        return 0
    left = points
    if first is not None:
        left -= take_from_lot(first, left)
    for row in open_rows(session, cust.id, at):
        if left == 0:
            break
        left -= take_from_lot(row, left)
    cust.debt += left
    record(session, cust.id, kind, -points, at, op_id=op_id, cashier_id=cashier_id)
    return left


def retier(program: Program, cust: Customer) -> str:
    """Re-evaluate the tier (never drops unless ``tier_demotion``)."""
    tier = tier_for(
        program,
        total_spent=cust.total_spent,
        purchase_count=cust.purchase_count,
        effective_invited=cust.effective_invited,
        current=cust.tier or None,
    )
    cust.tier = tier.name
    return tier.name


def ancestors(session: Session, cust: Customer, depth: int) -> list[Customer | None]:
    """Inviter chain up to ``depth`` levels (level 1 first); shorter when the chain ends."""
    chain: list[Customer | None] = []
    cur = cust
    while len(chain) < depth and cur.inviter_id is not None:
        nxt = session.get(Customer, cur.inviter_id)
        if nxt is None:
            break
        chain.append(nxt)
        cur = nxt
    return chain


def ancestor_ids(session: Session, cust_id: int, depth: int) -> list[int]:
    out: list[int] = []
    cur: int | None = cust_id
    while cur is not None and len(out) < depth:
        nxt = session.scalar(select(Customer.inviter_id).where(Customer.id == cur))
        if nxt is None:
            break
        out.append(nxt)
        cur = nxt
    return out
