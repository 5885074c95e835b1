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

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.errors import BadInput
from gateway.receipt import (
    MAX_AMOUNT,
    MAX_LINES,
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


def _reject_constant(name: str) -> Any:
    raise BadInput(f"{name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)  # built once, not per call

_fast_loads: Callable[[bytes], Any] | None
_FastError: type[Exception]
try:  # orjson, when installed, decodes the common case (UTF-8, 64-bit integers) several times faster
    from orjson import JSONDecodeError as _FastError
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads, _FastError = None, ValueError


def parse_json(body: bytes) -> Obj:
    """Request body -> JSON object. Fractions are refused later by the money checks (a float from
    orjson, a Decimal from the stdlib decoder). Whatever orjson refuses (other encodings, a BOM,
    integers beyond 64 bits, NaN, deep nesting, malformed text) is decoded again by the stdlib
    decoder, so the answer (value or error) is the stdlib's exactly as without orjson."""
    value: Any = None
    if _fast_loads is not None:
        try:
            value = _fast_loads(body)
        except _FastError:
            value = _slow_json(body)
    else:  # pragma: no cover - depends on the environment
        value = _slow_json(body)
    if type(value) is not dict:
        raise BadInput("the body must be a JSON object")
    return value


def _slow_json(body: bytes) -> Any:
    try:
        return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))  # as json.loads
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise BadInput("JSON nested too deeply") from None


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def get_obj(obj: Obj, key: str, path: str = "", *, required: bool = True) -> Obj | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise BadInput("is required", _where(path, key))
        return None
    if not isinstance(value, dict):
        raise BadInput("must be an object", _where(path, key))
    return value


def get_str(obj: Obj, key: str, path: str = "", *, required: bool = False, max_len: int = MAX_TEXT) -> str:
    value = obj.get(key)
    if type(value) is str and 0 < len(value) <= max_len:  # the common case, checked first
        return value
    if value is None or value == "":
        if required:
            raise BadInput("is required", _where(path, key))
        return ""
    if not isinstance(value, str):
        raise BadInput("must be a string", _where(path, key))
    if len(value) > max_len:
        raise BadInput(f"at most {max_len} characters", _where(path, key))
    return value


def get_int(
    obj: Obj, key: str, path: str = "", *, required: bool = False, default: int = 0, lo: int = 0,
    hi: int = MAX_AMOUNT,
) -> int:
    """An integer (kopecks, points, thousandths): no floats, strings or bools; within [lo, hi]."""
    value = obj.get(key)
    if type(value) is int and lo <= value <= hi:  # the common case (bool is not exactly int)
        return value
    if value is None:
        if required:
            raise BadInput("is required", _where(path, key))
        return default
    if type(value) is float and abs(value) >= 2**63:  # orjson reads an integer beyond 64 bits as a float
        value = lo - 1 if value < 0 else hi + 1  # refused as out of range, like the stdlib's big int
    if isinstance(value, bool) or not isinstance(value, int):
        what = "a fraction" if isinstance(value, Decimal | float) else type(value).__name__
        raise BadInput(f"must be an integer (kopecks, points or thousandths), got {what}", _where(path, key))
    if value < lo:
        raise BadInput(f"must not be less than {lo}", _where(path, key))
    if value > hi:
        raise BadInput(f"must not exceed {hi}", _where(path, key))
    return value


def get_bool(obj: Obj, key: str, path: str = "", *, default: bool = False) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadInput("must be true or false", _where(path, key))
    return value


def get_list(
    obj: Obj, key: str, path: str = "", *, required: bool = False, limit: int = MAX_LINES,
) -> list[Obj]:
    value = obj.get(key)
    if value is None:
        if required:
            raise BadInput("is required", _where(path, key))
        return []
    if not isinstance(value, list):
        raise BadInput("must be a list", _where(path, key))
    if len(value) > limit:
        raise BadInput(f"at most {limit} items", _where(path, key))
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadInput("must be an object", f"{_where(path, key)}[{i}]")
    return value


def get_time(obj: Obj, key: str, now: datetime, path: str = "") -> datetime:
    text = get_str(obj, key, path, max_len=64)
    if not text:
        return now
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput("must be an RFC 3339 time like 2024-05-01T12:00:00+03:00", _where(path, key)) from None
    if value.tzinfo is None:
        raise BadInput("must carry a UTC offset (…+03:00 or …Z)", _where(path, key))
    return value


def parse_customer(obj: Obj, path: str = "customer") -> CustomerId:
    given = [k for k in CUSTOMER_KINDS if obj.get(k) not in (None, "")]
    if len(given) != 1:
        raise BadInput(f"give exactly one of {', '.join(CUSTOMER_KINDS)}", path)
    kind = given[0]
    value = get_str(obj, kind, path, required=True, max_len=2048 if kind == "qr" else MAX_TEXT)
    return CustomerId(CUSTOMER_KINDS[kind], value, otp=get_str(obj, "otp", path, max_len=16))


def parse_identify(obj: Obj) -> CustomerId:
    customer = get_obj(obj, "customer")
    assert customer is not None
    return parse_customer(customer)


def parse_line(obj: Obj, path: str) -> Line:
    min_unit = obj.get("min_unit_price")
    return Line(
        line_id=get_str(obj, "line_id", path, required=True, max_len=64),
        sku=get_str(obj, "sku", path, required=True),
        name=get_str(obj, "name", path, required=True),
        category=get_str(obj, "category", path),
        price=get_int(obj, "price", path, required=True),
        qty_milli=get_int(obj, "qty_milli", path, required=True, lo=1, hi=MAX_QTY_MILLI),
        amount=get_int(obj, "amount", path, required=True),
        discountable=get_bool(obj, "discountable", path, default=True),
        accruable=get_bool(obj, "accruable", path, default=True),
        min_unit_price=None if min_unit is None else get_int(obj, "min_unit_price", path),
    )


def parse_receipt(obj: Obj, now: datetime, *, store_id: str = "", for_sale: bool = False) -> Receipt:
    """A calculate body (or a sale body with ``for_sale``) -> a validated Receipt."""
    cashier = get_obj(obj, "cashier", required=False) or {}
    customer = get_obj(obj, "customer", required=False)
    lines = get_list(obj, "lines", required=True)
    redeem_key = "redeemed_points" if for_sale else "redeem_points"
    receipt = Receipt(
        register_id=get_str(obj, "register_id", required=True, max_len=64),
        receipt_number=get_str(obj, "receipt_number", required=for_sale, max_len=64),
        shift=get_str(obj, "shift", max_len=64),
        occurred_at=get_time(obj, "occurred_at", now),
        fiscal_sign=get_str(obj, "fiscal_sign", max_len=64) if for_sale else "",
        document_id=get_str(obj, "document_id", max_len=128) if for_sale else "",
        cashier_id=get_str(cashier, "id", "cashier", max_len=64),
        cashier_name=get_str(cashier, "name", "cashier"),
        store_id=store_id,
        customer=None if customer is None else parse_customer(customer),
        redeem_points=get_int(obj, redeem_key),
        redeem_max=False if for_sale else get_bool(obj, "redeem_max"),
        lines=tuple(parse_line(line, f"lines[{i}]") for i, line in enumerate(lines)),
        payments=tuple(_payment(p, f"payments[{i}]") for i, p in enumerate(get_list(obj, "payments"))),
        driver=NAME,
    )
    if not receipt.lines:
        raise BadInput("a receipt needs at least one line", "lines")
    return receipt.validate()


def _payment(obj: Obj, path: str) -> Payment:
    kind = get_str(obj, "kind", path, required=True, max_len=16)
    if kind not in PAYMENT_KINDS:
        raise BadInput(f"must be one of {', '.join(PAYMENT_KINDS)}", f"{path}.kind")
    return Payment(kind, get_int(obj, "amount", path, required=True))


def parse_sale(obj: Obj, now: datetime, *, store_id: str = "") -> Event:
    receipt = parse_receipt(obj, now, store_id=store_id, for_sale=True)  # validated
    return Event(  # what sale_event builds, without validating the receipt a second time
        kind=EventKind.SALE, key=receipt.sale_key(), register_id=receipt.register_id,
        occurred_at=receipt.occurred_at, receipt=receipt, cashier_id=receipt.cashier_id,
        cashier_name=receipt.cashier_name, hold_id=get_str(obj, "hold_id", max_len=128),
        expected_redeemed=receipt.redeem_points,
    )


def sale_ref_key(obj: Obj, register_id: str, path: str = "sale") -> str:
    """The key of the sale a refund / cancel refers to (the same formula as the sale's own)."""
    document_id = get_str(obj, "document_id", path, max_len=128)
    ref = Receipt(
        register_id=register_id, lines=(), occurred_at=datetime.min,
        receipt_number="" if document_id else get_str(obj, "receipt_number", path, required=True, max_len=64),
        shift="" if document_id else get_str(obj, "shift", path, max_len=64),
        fiscal_sign="" if document_id else get_str(obj, "fiscal_sign", path, max_len=64),
        document_id=document_id, driver=NAME,
    )
    return ref.sale_key()


def parse_refund(obj: Obj, now: datetime) -> Event:
    register_id = get_str(obj, "register_id", required=True, max_len=64)
    refund_id = get_str(obj, "refund_id", required=True, max_len=128)
    sale = get_obj(obj, "sale")
    assert sale is not None
    full = get_bool(obj, "full")
    lines = tuple(
        RefundLine(
            get_str(line, "line_id", f"lines[{i}]", required=True, max_len=64),
            get_int(line, "qty_milli", f"lines[{i}]", required=True, lo=1, hi=MAX_QTY_MILLI),
        )
        for i, line in enumerate(get_list(obj, "lines"))
    )
    if full == bool(lines):
        raise BadInput("give either \"full\": true or the refunded lines", "lines")
    return Event(
        kind=EventKind.REFUND, key=f"{NAME}:{register_id}:refund:{refund_id}", register_id=register_id,
        occurred_at=get_time(obj, "occurred_at", now), sale_key=sale_ref_key(sale, register_id),
        refund_lines=lines, refund_full=full,
    )


def parse_cancel(obj: Obj, now: datetime) -> Event:
    register_id = get_str(obj, "register_id", required=True, max_len=64)
    sale = get_obj(obj, "sale")
    assert sale is not None
    sale_key = sale_ref_key(sale, register_id)
    cancel_id = get_str(obj, "cancel_id", max_len=128)
    return Event(
        kind=EventKind.CANCEL, key=f"{NAME}:{register_id}:cancel:{cancel_id or sale_key}",
        register_id=register_id, occurred_at=get_time(obj, "occurred_at", now), sale_key=sale_key,
    )
