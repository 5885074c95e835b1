"""Operator reads of the reference core's database: who is registered (``posgw core customer list``).

The core's gRPC API registers customers and issues grants but has no listing (a real core has
its own back office); this reads the reference core's tables directly, read-only, through the
same SQLAlchemy URL the core was started with. A balance is the sum of the open lots at ``at``
(available, not expired), as :func:`simulators.core.store.balance` counts it; live holds are not
subtracted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from simulators.core.db import make_engine
from simulators.core.tables import Card, Customer, LotRow


@dataclass(frozen=True)
class CustomerRow:
    id: int
    phone: str
    name: str
    cards: tuple[str, ...]
    tier: str
    balance: int
    debt: int
    blocked: bool
    channel: str
    purchases: int
    created_at: datetime


def list_customers(url: str, *, search: str = "", limit: int = 100, at: datetime | None = None,
                   ) -> list[CustomerRow]:
    """Customers in registration order (at most ``limit``); ``search`` keeps those whose phone, name
    or card contains it (case-insensitive, Cyrillic too)."""
    at = at or datetime.now(UTC)
    engine = make_engine(url, immediate=False)
    try:
        with Session(engine) as s:
            people: list[Customer] = []
            wanted = search.casefold()
            carded = {cid for cid, card in s.execute(select(Card.customer_id, Card.card))
                      if wanted in card.casefold()} if wanted else set()
            # filtered here, not in SQL: SQLite's lower() and LIKE fold ASCII letters only
            for c in s.scalars(select(Customer).order_by(Customer.id).execution_options(yield_per=500)):
                if not wanted or wanted in (c.phone or "").casefold() or wanted in c.name.casefold() \
                        or c.id in carded:
                    people.append(c)
                    if len(people) >= limit:
                        break
            ids = [c.id for c in people]
            cards: dict[int, list[str]] = {}
            owned = select(Card.customer_id, Card.card).where(Card.customer_id.in_(ids)).order_by(Card.card)
            for cust_id, card in s.execute(owned):
                cards.setdefault(cust_id, []).append(card)
            open_lots = (select(LotRow.customer_id, func.coalesce(func.sum(LotRow.remaining), 0))
                         .where(LotRow.customer_id.in_(ids), LotRow.remaining > 0,
                                LotRow.available_from <= at,
                                or_(LotRow.expires_at.is_(None), LotRow.expires_at > at))
                         .group_by(LotRow.customer_id))
            balances = {cust_id: int(total) for cust_id, total in s.execute(open_lots)}
            return [CustomerRow(c.id, c.phone or "", c.name, tuple(cards.get(c.id, ())), c.tier,
                                balances.get(c.id, 0), c.debt, c.blocked, c.channel, c.purchase_count,
                                c.created_at) for c in people]
    finally:
        engine.dispose()
