"""Customer rows as plain data for Commit: the buyer's inviter chain, row locks, counter writes.

A Commit changes a few columns of the buyer and of their ancestors (debt, counters, tier,
purchase dates). Loading them as ORM objects and flushing them cost most of the single SQLite
writer's time; here they are read with one SELECT and written with one plain UPDATE each.

Invariants:
- a unit of work has one :class:`Person` per customer id (the buyer who is also somebody's
  ancestor, or an ancestor met twice, is the same object), so no change is lost inside it;
- every Person is read inside the unit's own transaction after the rows are locked
  (PostgreSQL ``FOR UPDATE`` in id order, :func:`lock`; SQLite: one writer), so values written
  back are computed from the current row, also when an earlier unit of the same batch changed
  it; ORM objects the session may still hold for those rows are expired by the caller;
- only rows whose values changed are written; ``updated_at`` moves only for customers whose
  points changed (as the ORM path did).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulators.core.fastpath import Account, Sql, read_dt

_CHAIN = """
WITH RECURSIVE chain(id, lvl) AS (
  SELECT inviter_id, 1 FROM customers WHERE id = ? AND inviter_id IS NOT NULL
  UNION ALL
  SELECT c.inviter_id, chain.lvl + 1 FROM customers c JOIN chain ON c.id = chain.id
  WHERE c.inviter_id IS NOT NULL AND chain.lvl < ?
)
SELECT c.id, c.name, c.tier, c.debt, c.total_spent, c.purchase_count, c.effective_invited, c.blocked,
  c.inviter_id, chain.lvl
FROM chain JOIN customers c ON c.id = chain.id ORDER BY chain.lvl
"""
_WRITE = (
    "UPDATE customers SET tier = ?, debt = ?, total_spent = ?, purchase_count = ?, effective_invited = ?,"
    " first_purchase_at = COALESCE(?, first_purchase_at), last_purchase_at = COALESCE(?, last_purchase_at),"
    " updated_at = COALESCE(?, updated_at) WHERE id = ?"
)

_TEXT = {
    False: {"chain": _CHAIN, "write": _WRITE},
    True: {"chain": _CHAIN.replace("?", "%s"), "write": _WRITE.replace("?", "%s")},
}


@dataclass(slots=True)
class Person:
    """The columns of one customer row a Commit reads and changes."""

    id: int
    name: str
    tier: str
    debt: int
    total_spent: int
    purchase_count: int
    effective_invited: int
    blocked: bool
    inviter_id: int | None
    first_purchase_at: datetime | None = None  # the buyer's only (ancestors: not read)
    last_purchase_at: datetime | None = None
    touched: datetime | None = None  # new updated_at when the points changed
    _seen: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        self._seen = self._values()

    def _values(self) -> tuple[Any, ...]:
        return (self.tier, self.debt, self.total_spent, self.purchase_count, self.effective_invited,
                self.first_purchase_at, self.last_purchase_at, self.touched)  # fmt: skip

    @property
    def changed(self) -> bool:
        return self._values() != self._seen


def buyer(acct: Account) -> Person:
    return Person(
        id=acct.id,
        name=acct.name,
        tier=acct.tier,
        debt=acct.debt,
        total_spent=acct.total_spent,
        purchase_count=acct.purchase_count,
        effective_invited=acct.effective_invited,
        blocked=acct.blocked,
        inviter_id=acct.inviter_id,
        first_purchase_at=None if acct.first_purchase_at is None else read_dt(acct.first_purchase_at),
        last_purchase_at=None if acct.last_purchase_at is None else read_dt(acct.last_purchase_at),
    )


def chain(cursor: Any, sql: Sql, who: Person, depth: int, known: dict[int, Person]) -> list[Person]:
    """The inviter chain of ``who`` up to ``depth`` levels (level 1 first), one SELECT.

    ``known`` maps ids to the Persons of this unit; new ones are added to it."""
    if depth <= 0 or who.inviter_id is None:
        return []
    cursor.execute(_TEXT[sql.postgres]["chain"], (who.id, depth))
    out: list[Person] = []
    for r in cursor.fetchall():
        p = known.get(r[0])
        if p is None:
            p = Person(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8])
            known[p.id] = p
        out.append(p)
    return out


def chain_ids(cursor: Any, sql: Sql, customer_id: int, depth: int) -> list[int]:
    if depth <= 0:
        return []
    cursor.execute(_TEXT[sql.postgres]["chain"], (customer_id, depth))
    return [int(r[0]) for r in cursor.fetchall()]


def lock(cursor: Any, sql: Sql, ids: list[int]) -> None:
    """PostgreSQL: lock the customer rows ``ids`` in id order (no-op elsewhere)."""
    if sql.postgres and ids:
        cursor.execute(
            "SELECT id FROM customers WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sorted(set(ids)),)
        )
        cursor.fetchall()


def write(cursor: Any, sql: Sql, people: list[Person]) -> None:
    """One UPDATE per changed Person (dates: only when set; see the module docstring)."""
    params = []
    for p in people:
        if p.changed:
            params.append(
                (
                    p.tier,
                    p.debt,
                    p.total_spent,
                    p.purchase_count,
                    p.effective_invited,
                    None if p.first_purchase_at is None else sql.dt(p.first_purchase_at),
                    None if p.last_purchase_at is None else sql.dt(p.last_purchase_at),
                    None if p.touched is None else sql.dt(p.touched),
                    p.id,
                )
            )
    if params:
        cursor.executemany(_TEXT[sql.postgres]["write"], params)
