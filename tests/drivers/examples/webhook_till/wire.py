"""The webhook till's JSON in and out, and its mapping to Receipt / Event (pure).

In: ``{"till": "T1", "number": "42", "at": RFC 3339, "card": "...", "calc_token": "...",
"items": [{"sku", "name", "price" (kopecks), "qty" (thousandths)}]}``. Out: ``{"ok": true, ...}``
or ``{"ok": false, "error": {"code", "text"}}``.
"""

from __future__ import annotations

import json
from dataclasses import replace

from gateway import fields
from gateway.driver import CalcResult
from gateway.errors import BadInput
from gateway.receipt import Event, IdKind, Line, Receipt, sale_event


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def error(code: str, text: str) -> bytes:
    return dumps({"ok": False, "error": {"code": code, "text": text}})


def receipt(body: bytes, *, store_id: str, number_required: bool) -> Receipt:
    """The till's receipt; BadInput naming the field for anything wrong."""
    doc = fields.load_object(body)
    lines = []
    for i, item in enumerate(fields.objs(doc.get("items"), "items", required=True)):
        where = f"items[{i}]"
        price = fields.integer(item.get("price"), f"{where}.price", strict=True, required=True, lo=0)
        qty = fields.integer(item.get("qty"), f"{where}.qty", strict=True, required=True, lo=1)
        lines.append(Line(line_id=str(i + 1), sku=fields.text(item.get("sku"), f"{where}.sku", required=True),
                          name=fields.text(item.get("name"), f"{where}.name"), price=price, qty_milli=qty,
                          amount=fields.line_amount(price, qty)))
    if not lines:
        raise BadInput("a receipt needs at least one item", "items")
    at = fields.timestamp(doc.get("at"), "at")
    if at is None:
        raise BadInput("at is required", "at")
    card = doc.get("card")
    return Receipt(register_id=fields.text(doc.get("till"), "till", required=True),
                   receipt_number=fields.text(doc.get("number"), "number", required=number_required),
                   lines=tuple(lines), occurred_at=at, store_id=store_id,
                   customer=None if card in (None, "") else fields.customer(IdKind.CARD, card, "card"))


def sale(body: bytes, *, store_id: str) -> Event:
    """The sale event; its key is the till's identity of the receipt: ``webhook_till:<till>:<number>``."""
    r = receipt(body, store_id=store_id, number_required=True)
    token = fields.text(fields.load_object(body).get("calc_token"), "calc_token")
    event = sale_event(r, key=f"webhook_till:{r.register_id}:{r.receipt_number}")
    return replace(event, calc_token=token)


def calc_answer(result: CalcResult | None) -> bytes:
    if result is None:  # the gateway could not calculate: sell without loyalty
        return dumps({"ok": True, "discount": 0, "token": ""})
    return dumps({"ok": True, "discount": result.total_discount, "token": result.token,
                  "offline": result.offline})


def accepted(duplicate: bool) -> bytes:
    return dumps({"ok": True, "duplicate": duplicate})
