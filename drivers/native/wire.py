"""Native JSON API requests -> canonical objects (pure, no I/O, no clock).

Invariants:
- money and points are JSON integers of kopecks / points: a float (``12.5``), a string, a
  bool, a negative number or anything above ``10^13`` is refused with :class:`BadInput`
  whose ``field`` is the exact JSON path (``lines[2].amount``);
- quantities are integer thousandths (``qty_milli``), times RFC 3339 with a UTC offset;
- idempotency keys: a sale's is :meth:`Receipt.sale_key` (driver ``native``); a refund's is
  ``native:<register>:refund:<refund_id>``; a cancel's ``native:<register>:cancel:<cancel_id>``
  or, without a cancel id, ``native:<register>:cancel:<sale key>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway import fields
from gateway.errors import BadInput
from gateway.receipt import (
    MAX_AMOUNT,
    MAX_QTY_MILLI,
    CustomerId,
    Event,
    EventKind,
    IdKind,
    Line,
    Payment,
    Receipt,
    RefundLine,
)

NAME = "native"
MAX_TEXT = 256
CUSTOMER_KINDS = {"phone": IdKind.PHONE, "card": IdKind.CARD, "app_code": IdKind.APP_CODE,
                  "qr": IdKind.QR, "customer_id": IdKind.CUSTOMER_ID}
PAYMENT_KINDS = ("cash", "card", "points", "other")

Obj = dict[str, Any]
text, integer, boolean, objs = fields.text, fields.integer, fields.boolean, fields.objs  # the readers used


def parse_json(body: bytes) -> Obj:
    """Request body -> JSON object (:func:`gateway.fields.load_object`: orjson first, whatever it
    refuses decoded by the stdlib as ``json.loads`` would; errors carry no field)."""
    return fields.load_object(body, "", fast=True, any_encoding=True)


def _time(obj: Obj, key: str, now: datetime) -> datetime:
    return fields.timestamp(obj.get(key), key, limit=64, strict=True) or now


def parse_customer(obj: Obj, path: str = "customer") -> CustomerId:
    given = [k for k in CUSTOMER_KINDS if obj.get(k) not in (None, "")]
    if len(given) != 1:
        raise BadInput(f"give exactly one of {', '.join(CUSTOMER_KINDS)}", path)
    kind = given[0]
    otp = text(obj.get("otp"), f"{path}.otp", limit=16, strict=True)
    return fields.customer(CUSTOMER_KINDS[kind], obj.get(kind), f"{path}.{kind}", otp=otp, strict=True)


def parse_identify(obj: Obj) -> CustomerId:
    return parse_customer(fields.obj(obj.get("customer"), "customer"))


def parse_line(obj: Obj, path: str) -> Line:
    min_unit = obj.get("min_unit_price")
    return Line(  # readers called directly (no wrapper): this runs for every line of every sale
        line_id=text(obj.get("line_id"), f"{path}.line_id", required=True, limit=64, strict=True),
        sku=text(obj.get("sku"), f"{path}.sku", required=True, limit=MAX_TEXT, strict=True),
        name=text(obj.get("name"), f"{path}.name", required=True, limit=MAX_TEXT, strict=True),
        category=text(obj.get("category"), f"{path}.category", limit=MAX_TEXT, strict=True),
        price=integer(obj.get("price"), f"{path}.price", strict=True, required=True, lo=0, hi=MAX_AMOUNT),
        qty_milli=integer(obj.get("qty_milli"), f"{path}.qty_milli", strict=True, required=True, lo=1,
                          hi=MAX_QTY_MILLI),
        amount=integer(obj.get("amount"), f"{path}.amount", strict=True, required=True, lo=0, hi=MAX_AMOUNT),
        discountable=boolean(obj.get("discountable"), f"{path}.discountable", default=True),
        accruable=boolean(obj.get("accruable"), f"{path}.accruable", default=True),
        min_unit_price=None if min_unit is None else integer(
            min_unit, f"{path}.min_unit_price", strict=True, lo=0, hi=MAX_AMOUNT),
    )


def _str(obj: Obj, key: str, path: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    return text(obj.get(key), f"{path}.{key}", required=required, limit=limit, strict=True)


def _int(obj: Obj, key: str, path: str, *, lo: int = 0, hi: int = MAX_AMOUNT) -> int:
    """A required integer (kopecks, points, thousandths) of an object at ``path``."""
    return integer(obj.get(key), f"{path}.{key}", strict=True, required=True, lo=lo, hi=hi)


def parse_receipt(obj: Obj, now: datetime, *, store_id: str = "", for_sale: bool = False) -> Receipt:
    """A calculate body (or a sale body with ``for_sale``) -> a validated Receipt."""
    cashier = fields.opt_obj(obj.get("cashier"), "cashier")
    customer = obj.get("customer")
    lines = objs(obj.get("lines"), "lines", required=True)
    redeem_key = "redeemed_points" if for_sale else "redeem_points"
    receipt = Receipt(
        register_id=text(obj.get("register_id"), "register_id", required=True, limit=64, strict=True),
        receipt_number=text(obj.get("receipt_number"), "receipt_number", required=for_sale, limit=64,
                            strict=True),
        shift=text(obj.get("shift"), "shift", limit=64, strict=True),
        occurred_at=_time(obj, "occurred_at", now),
        fiscal_sign=text(obj.get("fiscal_sign"), "fiscal_sign", limit=64, strict=True) if for_sale else "",
        document_id=text(obj.get("document_id"), "document_id", limit=128, strict=True) if for_sale else "",
        cashier_id=_str(cashier, "id", "cashier", limit=64),
        cashier_name=_str(cashier, "name", "cashier"),
        store_id=store_id,
        customer=None if customer is None else parse_customer(fields.obj(customer, "customer")),
        redeem_points=integer(obj.get(redeem_key), redeem_key, strict=True, lo=0, hi=MAX_AMOUNT),
        redeem_max=False if for_sale else boolean(obj.get("redeem_max"), "redeem_max"),
        lines=tuple(parse_line(line, f"lines[{i}]") for i, line in enumerate(lines)),
        payments=tuple(_payment(p, f"payments[{i}]")
                       for i, p in enumerate(objs(obj.get("payments"), "payments"))),
        driver=NAME,
    )
    if not receipt.lines:
        raise BadInput("a receipt needs at least one line", "lines")
    return receipt.validate()


def _payment(obj: Obj, path: str) -> Payment:
    kind = _str(obj, "kind", path, required=True, limit=16)
    if kind not in PAYMENT_KINDS:
        raise BadInput(f"must be one of {', '.join(PAYMENT_KINDS)}", f"{path}.kind")
    return Payment(kind, _int(obj, "amount", path))


def parse_sale(obj: Obj, now: datetime, *, store_id: str = "") -> Event:
    receipt = parse_receipt(obj, now, store_id=store_id, for_sale=True)  # validated
    return Event(  # what sale_event builds, without validating the receipt a second time
        kind=EventKind.SALE, key=receipt.sale_key(), register_id=receipt.register_id,
        occurred_at=receipt.occurred_at, receipt=receipt, cashier_id=receipt.cashier_id,
        cashier_name=receipt.cashier_name,
        hold_id=text(obj.get("hold_id"), "hold_id", limit=128, strict=True),
        expected_redeemed=receipt.redeem_points if "redeemed_points" in obj else None,
        calc_token=text(obj.get("calc_token"), "calc_token", limit=2048, strict=True),
    )


def sale_ref_key(obj: Obj, register_id: str, path: str = "sale") -> str:
    """The key of the sale a refund / cancel refers to (the same formula as the sale's own)."""
    document_id = _str(obj, "document_id", path, limit=128)
    # every field is read (a wrong type or length is refused) even when document_id names the sale
    number = _str(obj, "receipt_number", path, required=not document_id, limit=64)
    shift, fiscal_sign = _str(obj, "shift", path, limit=64), _str(obj, "fiscal_sign", path, limit=64)
    if document_id:  # not part of the key, so not checked where the key is: checked here
        for key, value in (("receipt_number", number), ("shift", shift), ("fiscal_sign", fiscal_sign)):
            if not value.isprintable():
                raise BadInput("must not contain control or invisible characters", f"{path}.{key}")
    ref = Receipt(
        register_id=register_id, lines=(), occurred_at=datetime.min,
        receipt_number="" if document_id else number, shift="" if document_id else shift,
        fiscal_sign="" if document_id else fiscal_sign, document_id=document_id, driver=NAME,
    )
    return ref.sale_key()


def _register(obj: Obj) -> str:
    return text(obj.get("register_id"), "register_id", required=True, limit=64, strict=True)


def parse_refund(obj: Obj, now: datetime) -> Event:
    register_id = _register(obj)
    refund_id = text(obj.get("refund_id"), "refund_id", required=True, limit=128, strict=True)
    sale = fields.obj(obj.get("sale"), "sale")
    full = boolean(obj.get("full"), "full")
    lines = tuple(
        RefundLine(
            _str(line, "line_id", f"lines[{i}]", required=True, limit=64),
            _int(line, "qty_milli", f"lines[{i}]", lo=1, hi=MAX_QTY_MILLI),
        )
        for i, line in enumerate(objs(obj.get("lines"), "lines"))
    )
    if full == bool(lines):
        raise BadInput("give either \"full\": true or the refunded lines", "lines")
    return Event(
        kind=EventKind.REFUND, key=f"{NAME}:{register_id}:refund:{refund_id}", register_id=register_id,
        occurred_at=_time(obj, "occurred_at", now), sale_key=sale_ref_key(sale, register_id),
        refund_lines=lines, refund_full=full,
    )


def parse_cancel(obj: Obj, now: datetime) -> Event:
    register_id = _register(obj)
    sale_key = sale_ref_key(fields.obj(obj.get("sale"), "sale"), register_id)
    cancel_id = text(obj.get("cancel_id"), "cancel_id", limit=128, strict=True)
    return Event(
        kind=EventKind.CANCEL, key=f"{NAME}:{register_id}:cancel:{cancel_id or sale_key}",
        register_id=register_id, occurred_at=_time(obj, "occurred_at", now), sale_key=sale_key,
    )
