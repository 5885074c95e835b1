"""MoySklad wire values <-> canonical receipts and events, and CalcResult -> recalc answer. Pure.

Invariants:
- the recalc answer's positions keep the request's order; a position whose paid amount does not
  divide into whole kopecks per unit is split into two adjacent parts of the same assortment
  (``r`` units at ``u + 1`` kopecks, the rest at ``u``), quantities summing to the original and
  serial numbers divided by quantity; Σ discountedPrice × quantity is the payable total to the
  kopeck whenever one piece position can carry what weight positions cannot (:func:`price`);
- ``discountPercent`` is 0..100 with 2 decimals; ``paidByBonusPoints`` = Σ price × quantity −
  Σ discountedPrice × quantity (we give no other discount);
- committed lines are keyed by assortment id (split parts merged back), so a return matches its
  sale line by line;
- idempotency keys: ``moysklad:demand:<meta.id>`` / ``moysklad:return:<meta.id>``; with an empty
  id the documented fallback retail store + ``name`` + ``moment``; neither → BadInput;
- :func:`digest` is the content a resend must repeat (positions, points, gift cards, agent): the
  same key with another digest is a conflict;
- :func:`calc_key` names a recalc and its sale alike (MoySklad carries nothing from one to the other
  and the recalc has no document id): the retail store, the counterparty and the goods before
  discounts, split parts merged, so a sale finds the calc token of the recalc the till applied;
- under one calc key at most :data:`CALC_TOKENS_KEPT` tokens are kept, oldest first (two tills, or
  a reopened receipt, recalc the same basket for the same customer and neither body carries a till
  or recalc identity); :func:`pick` chooses the one a sale commits with: the newest whose points
  redeemed equal the sale's spending, else the newest allowing at least that, else the newest;
- ``moment`` has no zone: it is read as Moscow time (UTC+3, MoySklad's servers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from drivers.moysklad import NAME
from drivers.moysklad.wire import Agent, Document, Position, PricedPosition, Recalc, RecalcAnswer
from gateway.driver import CalcResult
from gateway.errors import BadInput
from gateway.fields import line_amount
from gateway.receipt import (
    CustomerId,
    Event,
    EventKind,
    Line,
    Payment,
    Receipt,
    RefundLine,
    derived_key,
    sale_event,
)

MSK = timezone(timedelta(hours=3))
PV = 100  # kopecks per point: MoySklad's programs price 1 point = 1 ruble (the answer is in points)


def moment(text: str, now: datetime) -> datetime:
    """``YYYY-MM-DD HH:MM:SS`` (Moscow) -> aware time; empty → ``now``."""
    if not text:
        return now
    try:
        when = datetime.strptime(text.strip()[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise BadInput("must be like 2025-08-01 14:05:31", "moment") from None
    return when.replace(tzinfo=MSK)


def phone_key(phone: str) -> str:
    """One spelling of a phone for the driver's own keys: digits, a Russian 8… or 10-digit number as
    7… (the verify request and the customer card may write it differently)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) == 11 and digits.startswith("8"):
        return "7" + digits[1:]
    return "7" + digits if len(digits) == 10 else digits


def document_key(kind: str, doc: Document) -> str:
    """The idempotency key of a sale (``demand``) or return (``return``)."""
    if doc.doc_id:
        return derived_key(NAME, kind, doc.doc_id)
    if not (doc.name and doc.moment):
        raise BadInput("the document has no meta.id, name or moment: nothing identifies it", "meta.id")
    return derived_key(NAME, kind, doc.store, doc.name, doc.moment)


def calc_key(store: str, agent: Agent | None, positions: Sequence[Position]) -> str:
    """The driver-state key under which a recalc keeps its calc token for the sale of the same goods
    (see the module docstring); "" when no counterparty names the customer (nothing to keep)."""
    who = "" if agent is None else agent.ms_id or phone_key(agent.phone) or agent.card
    if not who:
        return ""
    lines = sorted((k, q, a) for k, (_, q, a) in goods(positions).lines.items())
    shape = hashlib.sha256(json.dumps([store, who, lines]).encode()).hexdigest()[:32]
    return f"calc:{shape}"


CALC_TOKENS_KEPT = 8  # recalcs of one basket for one customer at one store whose sales may still come


def calc_tokens(raw: str | None) -> list[str]:
    """The calc tokens kept under a :func:`calc_key`, oldest first. A value written before tokens
    were kept as a list is one token; anything unreadable is none (the sale is checked without)."""
    if not raw:
        return []
    if not raw.startswith("["):
        return [raw]
    try:
        values = json.loads(raw)
    except ValueError:
        return []
    return [v for v in values if isinstance(v, str) and v] if isinstance(values, list) else []


def kept_tokens(tokens: Sequence[str]) -> str:
    """The state value keeping ``tokens`` (oldest first): the newest :data:`CALC_TOKENS_KEPT`; ""
    when none is left."""
    return json.dumps(list(tokens[-CALC_TOKENS_KEPT:])) if tokens else ""


def pick(redeemed: Sequence[int | None], spend: int) -> int | None:
    """The index of the kept token a sale spending ``spend`` points commits with, given what each
    kept token redeemed (oldest first; None: a token that does not verify, never picked): the
    newest that redeemed exactly ``spend`` (the recalc the till applied; of several, the last one,
    as a reopened receipt's last recalc wins), else the newest that allowed at least ``spend``,
    else the newest (the sale is then refused if it spends more than that one allowed); None when
    no token verifies."""
    usable = [(i, r) for i, r in enumerate(redeemed) if r is not None]
    for match in (lambda r: r == spend, lambda r: r >= spend, lambda r: True):
        found = [i for i, r in usable if match(r)]
        if found:
            return found[-1]
    return None


def digest(doc: Document) -> str:
    """What a resend of ``doc`` must repeat (see the module docstring)."""
    content = {
        "p": sorted((p.assortment_id, p.quantity, p.price, p.discounted or 0) for p in doc.positions),
        "s": doc.spend,
        "e": doc.earn,
        "a": doc.agent.ms_id if doc.agent else "",
        "d": doc.demand_id,
        "g": sorted((g.card_id, g.kopecks) for g in doc.gift_cards),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


# ---------------------------------------------------------------- recalc


def calc_receipt(
    req: Recalc,
    customer: CustomerId | None,
    redeem: int,
    redeem_max: bool,
    *,
    now: datetime,
    store_id: str = "",
) -> Receipt:
    """The receipt a recalc asks about; line ``p<i>`` is request position ``i``."""
    lines = tuple(
        Line(
            line_id=f"p{i}",
            sku=p.assortment_id,
            name="",
            price=p.price,
            qty_milli=p.quantity,
            amount=line_amount(p.price, p.quantity),
        )
        for i, p in enumerate(req.positions)
    )
    return Receipt(
        register_id=req.store,
        receipt_number="",
        lines=lines,
        occurred_at=now,
        store_id=store_id or req.store,
        customer=customer,
        redeem_points=redeem,
        redeem_max=redeem_max,
        driver=NAME,
    ).validate()


def percent(price: int, discounted: int) -> Decimal:
    if price <= 0:
        return Decimal("0.00")
    pct = (Decimal(price - discounted) * 100 / price).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return min(max(pct, Decimal("0.00")), Decimal("100.00"))


def _split_sn(sn: tuple[object, ...], sizes: Sequence[int]) -> list[tuple[object, ...]]:
    """Serial numbers divided so each part has as many as its whole units (when they match)."""
    if not sn:
        return [() for _ in sizes]
    units = [q // 1000 for q in sizes]
    if sum(units) != len(sn):
        return [sn if i == 0 else () for i in range(len(sizes))]
    out, at = [], 0
    for n in units:
        out.append(sn[at : at + n])
        at += n
    return out


def _piece(pos: Position) -> bool:
    return pos.quantity % 1000 == 0


def _parts(pos: Position, paid: int) -> list[tuple[int, int]]:
    """(unit price, quantity) parts paying exactly ``paid`` for a piece position."""
    units = pos.quantity // 1000
    unit, extra = divmod(paid, units)
    parts = [(unit + 1, extra * 1000), (unit, (units - extra) * 1000)]
    return [(u, q) for u, q in parts if q > 0]


def price(positions: Sequence[Position], discounts: Sequence[int]) -> list[PricedPosition]:
    """Final per-unit prices for ``positions`` given each one's discount in kopecks.

    A weight position gets the dearest unit price whose line total (rounded half-up, as the till
    rounds it) does not exceed what it pays, and what that leaves unpaid (less than its quantity
    in kilograms, rounded up, in kopecks) is carried by the first piece position whose discount can take it
    (its discount shrinks by that much), so the total payable stays exact."""
    paid = [line_amount(p.price, p.quantity) - d for p, d in zip(positions, discounts, strict=True)]
    weight_units: dict[int, int] = {}
    carry = 0
    for i, pos in enumerate(positions):
        if not _piece(pos):
            # the dearest unit price whose rounded line total does not exceed what is paid
            unit = min(pos.price, (paid[i] * 1000 + 499) // pos.quantity)
            weight_units[i] = unit
            carry += paid[i] - line_amount(unit, pos.quantity)
    if carry:
        for i, pos in enumerate(positions):
            if _piece(pos) and discounts[i] >= carry:
                paid[i] += carry
                carry = 0
                break
    out: list[PricedPosition] = []
    for i, pos in enumerate(positions):
        if i in weight_units:
            unit = weight_units[i]
            out.append(PricedPosition(pos, pos.quantity, unit, percent(pos.price, unit), pos.sn))
            continue
        parts = _parts(pos, paid[i])
        for (unit, qty), sn in zip(parts, _split_sn(pos.sn, [q for _, q in parts]), strict=True):
            out.append(PricedPosition(pos, qty, unit, percent(pos.price, unit), sn))
    return out


def payable(priced: Sequence[PricedPosition]) -> int:
    """What the till computes: Σ discountedPrice × quantity, each rounded half-up to the kopeck."""
    return sum(line_amount(p.discounted, p.quantity) for p in priced)


def recalc_answer(
    req: Recalc, result: CalcResult | None, *, balance: int, need_code: bool, extra_info: str = ""
) -> RecalcAnswer:
    """The answer: every position priced, the points spent and earned. ``result`` None: no loyalty."""
    by_id = {} if result is None else {c.line_id: c.discount for c in result.lines}
    discounts = [by_id.get(f"p{i}", 0) for i in range(len(req.positions))]
    priced = price(req.positions, discounts)
    gross = sum(line_amount(p.price, p.quantity) for p in req.positions)
    spend = 0 if result is None else result.redeemed_points
    earn = 0 if result is None else result.points_to_accrue
    return RecalcAnswer(
        positions=tuple(priced),
        spending=req.spending,
        balance=balance,
        spend=spend,
        earn=earn,
        paid_by_points=gross - payable(priced),
        extra_info=extra_info,
        need_code=need_code and spend > 0,
    )


# ---------------------------------------------------------------- sale and return


@dataclass(frozen=True, slots=True)
class Goods:
    """A document's lines merged per assortment: line id -> (unit price, quantity, amount)."""

    lines: Mapping[str, tuple[int, int, int]]

    def as_json(self) -> str:
        return json.dumps(self.lines, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Goods:
        raw = json.loads(text)
        return Goods({k: (int(v[0]), int(v[1]), int(v[2])) for k, v in raw.items()})


def goods(positions: Sequence[Position]) -> Goods:
    merged: dict[str, tuple[int, int, int]] = {}
    for pos in positions:
        amount = line_amount(pos.price, pos.quantity)
        seen = merged.get(pos.assortment_id)
        merged[pos.assortment_id] = (
            (pos.price, pos.quantity, amount)
            if seen is None
            else (seen[0], seen[1] + pos.quantity, seen[2] + amount)
        )
    return Goods(merged)


def sale_of(
    doc: Document, customer: CustomerId | None, *, key: str, now: datetime, store_id: str = ""
) -> Event:
    """The sale event: lines before loyalty, points to spend as the till applied them."""
    merged = goods(doc.positions)
    lines = tuple(
        Line(line_id=k, sku=k, name="", price=p, qty_milli=q, amount=a)
        for k, (p, q, a) in merged.lines.items()
    )
    payments = [Payment("cash", doc.cash), Payment("card", doc.no_cash)]
    payments += [Payment("gift_card", g.kopecks) for g in doc.gift_cards]
    receipt = Receipt(
        register_id=doc.store,
        receipt_number=doc.name,
        lines=lines,
        occurred_at=moment(doc.moment, now),
        document_id=doc.doc_id,
        store_id=store_id or doc.store,
        customer=customer,
        redeem_points=doc.spend if customer is not None else 0,
        payments=tuple(p for p in payments if p.amount),
        driver=NAME,
    )
    event = sale_event(receipt, key=key)
    if customer is not None and doc.spend:
        event = replace(event, expected_redeemed=doc.spend)
    return event


def returned_lines(doc: Document, sold: Goods, before: Mapping[str, int]) -> dict[str, int]:
    """What this return takes back per sale line, capped at what the sale had left."""
    asked = goods(doc.positions)
    out: dict[str, int] = {}
    for line_id, (_, qty, _) in asked.lines.items():
        if line_id not in sold.lines:
            continue
        left = sold.lines[line_id][1] - before.get(line_id, 0)
        take = min(qty, max(0, left))
        if take > 0:
            out[line_id] = take
    return out


def refund_of(doc: Document, sale_key: str, lines: Mapping[str, int], *, key: str, now: datetime) -> Event:
    return Event(
        kind=EventKind.REFUND,
        key=key,
        register_id=doc.store,
        occurred_at=moment(doc.moment, now),
        sale_key=sale_key,
        refund_lines=tuple(RefundLine(k, q) for k, q in sorted(lines.items())),
    )

