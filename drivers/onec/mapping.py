"""1C / Manzana cheques <-> canonical receipts and events, and CalcResult -> ChequeResponse (pure).

Invariants:
- money is integer kopecks; bonuses travel in roubles and are points x ``pv`` (the program's point
  value in kopecks): a write-off asked in roubles is ``PaidByBonus // pv`` points, never rounded up;
- the header ``Summ``/``Discount``/``SummDiscounted`` and each item's are echoed as the till sent
  them (Manzana does the same); the loyalty effect is the bonus payment: ``WriteoffBonus`` per item
  is the core's line discount (the points spread over the lines), and the items' write-offs sum
  exactly to the header's; ``AvailablePayment`` is spread over the items by their amounts, the
  remainder on the largest line;
- line ids are the article (``<Article>#<k>`` for its k-th repeat, ``pos<PositionNumber>`` without
  one), so a Return's items name the lines of the sale it cites;
- the idempotency key of a cheque is ``onec:<BusinessUnit>:<POS>:<Number>:<local date>:<operation>``
  (:func:`cheque_key`): a Fiscal resent under a new RequestID, a retry after a timeout and a replay
  after a crash map to the same key; a Rollback's is ``onec:rollback:`` + the cancelled cheque's key;
- a TransactionID is derived from the key it answers for (:func:`transaction_id`): the same cheque
  always gets the same one, and a Rollback naming it finds the cheque again.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, tzinfo

from drivers.onec import NAME
from drivers.onec.wire import (
    INVALID_FIELD,
    OK,
    UNKNOWN_CARD,
    Card,
    Cheque,
    ChequeAnswer,
    ItemAnswer,
)
from gateway.driver import CalcResult
from gateway.errors import BadInput
from gateway.fields import customer
from gateway.receipt import (
    CustomerId,
    Event,
    EventKind,
    IdKind,
    Line,
    Receipt,
    RefundLine,
    derived_key,
    sale_event,
)

TOKEN_KEY = "posgw_calc_token"  # an ExtendedAttribute a module may use to carry the calc token to Fiscal
OFFLINE_TEXT = "Бонусы временно недоступны: начисление будет позже"
CARD_KINDS = {
    "CardNumber": IdKind.CARD,
    "Track2": IdKind.CARD,
    "Tracks": IdKind.CARD,
    "MobilePhone": IdKind.PHONE,
}


def customer_of(card: Card | None) -> CustomerId | None:
    if card is None:
        return None
    value = card.value.strip()
    if card.kind in ("Track2", "Tracks"):  # a magnetic track: the number before '=' (';' start sentinel)
        value = value.lstrip(";%B").split("=", 1)[0].split("^", 1)[0].rstrip("?")
    return customer(CARD_KINDS[card.kind], value, f"Card/{card.kind}")


def register_of(business_unit: str, pos: str) -> str:
    return f"{business_unit}/{pos}" if business_unit else pos or NAME


def local_day(when: datetime, zone: tzinfo) -> str:
    return when.astimezone(zone).date().isoformat()


def cheque_key(business_unit: str, pos: str, number: str, day: str, operation: str) -> str:
    return derived_key(NAME, business_unit, pos, number, day, operation.lower())


def key_of(c: Cheque, zone: tzinfo) -> str:
    if not c.number:
        raise BadInput("is required for a Fiscal cheque", "ChequeRequest/Number")
    return cheque_key(c.business_unit, c.pos, c.number, local_day(c.when, zone), c.operation)


def referenced_key(c: Cheque, zone: tzinfo) -> str:
    """The key of the Sale a Return or Rollback cites by ChequeReference (its empty fields: this
    cheque's own organisation, business unit and POS)."""
    ref = c.reference
    if ref is None:
        raise BadInput("is required for a Return or Rollback", "ChequeRequest/ChequeReference")
    return cheque_key(
        ref.business_unit or c.business_unit, ref.pos or c.pos, ref.number, local_day(ref.when, zone), "Sale"
    )


def transaction_id(*parts: str) -> int:
    """A positive 63-bit id derived from ``parts`` (stable across resends and restarts)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 or 1


def fingerprint(c: Cheque) -> str:
    """What makes a resent Fiscal the same cheque: operation, card, write-off, references and goods
    (not RequestID or DateTime, which a resending module may renew). Another cheque under the same
    key (a counter reset, a module sending one Number for every cheque) has another fingerprint."""
    ref = c.reference
    parts = [
        c.operation,
        c.card.value if c.card else "",
        str(c.paid_by_bonus),
        str(c.transaction_ref or ""),
        f"{ref.business_unit}/{ref.pos}/{ref.number}/{ref.when.isoformat()}" if ref else "",
        *(f"{i.article}/{i.price}/{i.qty_milli}/{i.summ_discounted}" for i in c.items),
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def line_ids(c: Cheque) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for item in c.items:
        if not item.article:
            out.append(f"pos{item.position}")
            continue
        n = seen[item.article] = seen.get(item.article, 0) + 1
        out.append(item.article if n == 1 else f"{item.article}#{n}")
    return out


def receipt_of(c: Cheque, zone: tzinfo, *, store_id: str, pv: int) -> Receipt:
    """The canonical receipt of a cheque with items (BadInput naming the field otherwise)."""
    lines = tuple(
        Line(
            line_id=lid,
            sku=i.article or lid,
            name=i.name,
            price=i.price,
            qty_milli=i.qty_milli,
            amount=i.summ_discounted,
            accruable=i.accrues,
        )
        for lid, i in zip(line_ids(c), c.items, strict=True)
    )
    number = f"{c.number}@{local_day(c.when, zone)}" if c.number else ""
    return Receipt(
        register_id=register_of(c.business_unit, c.pos),
        receipt_number=number,
        lines=lines,
        occurred_at=c.when,
        store_id=store_id or c.business_unit,
        customer=customer_of(c.card),
        redeem_points=c.paid_by_bonus // pv,
        driver=NAME,
    ).validate()


def token_of(c: Cheque) -> str:
    return next((v for k, v in c.attributes if k == TOKEN_KEY and v), "")


def _spread(total: int, weights: list[int]) -> list[int]:
    """``total`` split over ``weights`` proportionally, exactly (the remainder on the largest)."""
    whole = sum(weights)
    if total <= 0 or whole <= 0:
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    parts[max(range(len(weights)), key=lambda i: weights[i])] += total - sum(parts)
    return parts


def echo(
    c: Cheque, *, tx: int, now: datetime, code: int = OK, message: str = "OK", writeoff: int = 0
) -> ChequeAnswer:
    """The cheque as sent, no bonuses (the answer of a Return, a Rollback, a cheque without items,
    a sale without loyalty), or with ``writeoff`` kopecks of bonus payment on the header."""
    items = tuple(
        ItemAnswer(i.position, i.article, i.price, i.qty_milli, i.summ, i.discount, i.summ_discounted, 0, w)
        for i, w in zip(c.items, _spread(writeoff, [i.summ_discounted for i in c.items]), strict=True)
    )
    return ChequeAnswer(
        transaction_id=tx,
        request_id=c.request_id,
        processed=now,
        return_code=code,
        message=message,
        card_number=c.card.value if c.card and c.card.kind == "CardNumber" else "",
        summ=c.summ,
        discount=c.discount,
        summ_discounted=c.summ_discounted,
        writeoff=writeoff,
        items=items,
    )


def invalid(c_request_id: str, exc: BadInput, *, tx: int, now: datetime) -> ChequeAnswer:
    """ReturnCode 90001 naming the field (a readable request with a wrong value; nothing stored)."""
    where = f" ({exc.field})" if exc.field else ""
    return ChequeAnswer(
        transaction_id=tx,
        request_id=c_request_id,
        processed=now,
        return_code=INVALID_FIELD,
        message=f"Неверное поле{where}: {exc}"[:500],
    )


def soft_answer(
    c: Cheque, receipt: Receipt, result: CalcResult | None, *, tx: int, now: datetime, pv: int
) -> ChequeAnswer:
    """The ChequeResponse of a Soft Sale: what the gateway calculated, or the cheque as sent when it
    could not (None: sell without loyalty) or when the card is unknown (90002, online only)."""
    base = echo(c, tx=tx, now=now)
    if result is None:
        return replace(base, message=OFFLINE_TEXT)
    if receipt.customer is not None and not result.customer_found and not result.offline:
        return replace(base, return_code=UNKNOWN_CARD, message=result.message or "Карта не найдена")
    discount = {x.line_id: x.discount for x in result.lines}
    available = result.max_points * pv
    avail = _spread(available, [i.summ_discounted for i in c.items])
    items = tuple(
        ItemAnswer(
            i.position,
            i.article,
            i.price,
            i.qty_milli,
            i.summ,
            i.discount,
            i.summ_discounted,
            av,
            discount.get(lid, 0),
        )
        for i, lid, av in zip(c.items, line_ids(c), avail, strict=True)
    )
    writeoff = sum(i.writeoff for i in items)
    message = result.message or ("OK" if not result.offline else OFFLINE_TEXT)
    if result.rejection:
        message = (
            f"{message}; списание не принято ({result.rejection})" if message != "OK" else result.rejection
        )
    return replace(
        base,
        items=items,
        writeoff=writeoff,
        available=available,
        charged=result.points_to_accrue * pv,
        message=message,
        level_name=result.tier,
        card_balance=None if result.offline or result.balance is None else result.balance * pv,
    )


# ---------------------------------------------------------------- commits


def sale_of(c: Cheque, zone: tzinfo, *, store_id: str, pv: int) -> Event:
    receipt = receipt_of(c, zone, store_id=store_id, pv=pv)
    event = sale_event(receipt, key=key_of(c, zone))
    points = receipt.redeem_points
    return replace(event, calc_token=token_of(c), expected_redeemed=points if points else None)


def refund_of(c: Cheque, zone: tzinfo, *, store_id: str, pv: int) -> Event:
    """A Return: the items returned (none: the whole sale), citing the sale by ChequeReference."""
    sale_key = referenced_key(c, zone)
    receipt = replace(receipt_of(c, zone, store_id=store_id, pv=pv), redeem_points=0) if c.items else None
    return Event(
        kind=EventKind.REFUND,
        key=key_of(c, zone),
        register_id=register_of(c.business_unit, c.pos),
        occurred_at=c.when,
        receipt=receipt,
        sale_key=sale_key,
        refund_lines=tuple(RefundLine(lid, i.qty_milli) for lid, i in zip(line_ids(c), c.items, strict=True)),
        refund_full=not c.items,
        refund_amount=sum(i.summ_discounted for i in c.items),
    )


def cancel_of(c: Cheque, sale_key: str) -> Event:
    """A Rollback of the cheque stored under ``sale_key``."""
    return Event(
        kind=EventKind.CANCEL,
        key=derived_key(NAME, "rollback", sale_key),
        register_id=register_of(c.business_unit, c.pos),
        occurred_at=c.when,
        sale_key=sale_key,
        calc_token=token_of(c),
    )
