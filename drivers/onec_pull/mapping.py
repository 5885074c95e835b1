"""1C ``LoyaltyFeed`` receipts (as zeep reads them: dicts of plain values) -> events (pure).

A receipt is ``{Id, Number, DateTime, Store, POS, OperationType (Sale | Return), BaseId?, CardNumber?,
Phone?, Summ, SummDiscounted, PaidByBonus?, FiscalSign?, Line*{LineNo, Article, Name?, Price,
Quantity, Summ}}`` (drivers/onec_pull/README.md, the contract of the site's 1C extension).

Invariants: the key of a receipt is ``onec_pull:doc:<Id>`` (the 1C document's UUID): a redelivered
receipt, one listed in two batches and one fetched again after a crash map to it; a Return cites its
sale by ``BaseId`` (the sale document's Id); line ids are the article (``<Article>#<k>`` for its k-th
repeat), so a return's lines name the sale's; money is integer kopecks, a write-off in roubles is
``PaidByBonus // pv`` points; anything malformed raises BadInput naming the field.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from drivers.onec_pull import NAME
from gateway import fields
from gateway.errors import BadInput
from gateway.receipt import Event, EventKind, IdKind, Line, Receipt, RefundLine, derived_key, sale_event


def doc_key(doc_id: str) -> str:
    return derived_key(NAME, "doc", doc_id)


def _text(doc: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = doc.get(key)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        value = str(value)
    return fields.text(
        value.strip() if isinstance(value, str) else value, f"{where}.{key}", required=required
    )


def _money(doc: dict[str, Any], key: str, where: str, *, default: int | None = None) -> int:
    value = doc.get(key)
    if value is None and default is not None:
        return default
    kop = fields.kopecks(str(value) if isinstance(value, int | float | Decimal) else value, f"{where}.{key}")
    if kop < 0:
        raise BadInput("must not be negative (a return states its sums positive)", f"{where}.{key}")
    return kop


def _when(doc: dict[str, Any], where: str, zone: tzinfo) -> datetime:
    value = doc.get("DateTime")
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    raw = _text(doc, "DateTime", where, required=True)
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BadInput("must be an xs:dateTime", f"{where}.DateTime") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


def lines_of(doc: dict[str, Any], where: str) -> tuple[Line, ...]:
    seen: dict[str, int] = {}
    out = []
    for i, ln in enumerate(doc.get("Line") or [], 1):
        at = f"{where}.Line[{i}]"
        if not isinstance(ln, dict):
            raise BadInput("must be a line", at)
        article = _text(ln, "Article", at, required=True)
        n = seen[article] = seen.get(article, 0) + 1
        qty = fields.milli(
            str(ln.get("Quantity")) if ln.get("Quantity") is not None else None,
            f"{at}.Quantity",
            signed=False,
        )
        price = _money(ln, "Price", at)
        out.append(
            Line(
                line_id=article if n == 1 else f"{article}#{n}",
                sku=article,
                name=_text(ln, "Name", at),
                price=price,
                qty_milli=qty,
                amount=_money(ln, "Summ", at, default=fields.line_amount(price, qty)),
            )
        )
    return tuple(out)


def to_event(doc: dict[str, Any], zone: tzinfo, *, store_id: str, pv: int) -> Event:
    """The sale or refund of one receipt; BadInput naming the field for anything malformed."""
    doc_id = _text(doc, "Id", "Receipt", required=True)
    where = f"Receipt[{doc_id}]"
    op = _text(doc, "OperationType", where, required=True).capitalize()
    if op not in ("Sale", "Return"):
        raise BadInput("must be Sale or Return", f"{where}.OperationType")
    card, phone = _text(doc, "CardNumber", where), _text(doc, "Phone", where)
    customer = fields.first_customer(
        [(IdKind.CARD, card, f"{where}.CardNumber"), (IdKind.PHONE, phone, f"{where}.Phone")]
    )
    pos, store = _text(doc, "POS", where, required=True), _text(doc, "Store", where)
    paid = _money(doc, "PaidByBonus", where, default=0) if op == "Sale" else 0
    receipt = Receipt(
        register_id=f"{store}/{pos}" if store else pos,
        receipt_number=_text(doc, "Number", where),
        lines=lines_of(doc, where),
        occurred_at=_when(doc, where, zone),
        document_id=doc_id,
        fiscal_sign=_text(doc, "FiscalSign", where),
        store_id=store_id or store,
        customer=customer,
        redeem_points=paid // pv,
        driver=NAME,
    )
    if op == "Sale":
        event = sale_event(receipt, key=doc_key(doc_id))
        return replace(event, expected_redeemed=receipt.redeem_points or None)
    base = _text(doc, "BaseId", where, required=True)
    receipt.validate()
    return Event(
        kind=EventKind.REFUND,
        key=doc_key(doc_id),
        register_id=receipt.register_id,
        occurred_at=receipt.occurred_at,
        receipt=receipt,
        sale_key=doc_key(base),
        refund_lines=tuple(RefundLine(ln.line_id, ln.qty_milli) for ln in receipt.lines),
        refund_amount=_money(doc, "SummDiscounted", where, default=receipt.total),
    )
