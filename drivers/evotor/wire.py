"""Evotor plugin path on the wire: the JSON our terminal plugin posts, and the answer it reads.

Pure: bytes in, typed values out (and back). Owns the Evotor units at the edge:
- money on the device is rubles as plain decimal strings ("199.90"); it becomes integer
  kopecks here, half-up (the SDK's ``MoneyCalculator.round`` mode), and never a float;
- quantities are decimal strings, fractional for weight goods; they become thousandths;
- ids are opaque strings (Evotor ids are often not RFC-4122), only length-checked.

Invariant: every malformed input raises :class:`gateway.errors.BadInput` naming the field;
no other exception leaves :func:`parse_plugin` (the driver turns BadInput into a 400).
The readers are :mod:`gateway.fields` (every driver's); :func:`loads` and :func:`ident` are
its settings for Evotor, shared with :mod:`drivers.evotor.cloud_wire`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gateway import fields, http_edge
from gateway.errors import BadInput
from gateway.fields import (
    kopecks,
    milli,
    obj,
    opt_lst,
    opt_obj,
    rubles,
    text,
    timestamp,
)
from gateway.receipt import MAX_LINES

MAX_ID = 128

# ---------------------------------------------------------------- JSON (readers: gateway.fields)


def loads(body: bytes | str, *, lenient: bool = False) -> object:
    """Parse JSON with Decimal numbers; ``lenient`` tolerates trailing commas (Evotor's 2017 docs)."""
    return fields.loads(body, trailing_commas=lenient)


strip_trailing_commas = fields.strip_trailing_commas  # where Evotor's callers have always found it


def ident(value: object, where: str, *, required: bool = True) -> str:
    return fields.ident(value, where, required=required, limit=MAX_ID)


# ---------------------------------------------------------------- plugin messages


class Kind(StrEnum):
    CALC = "calc"
    CLOSE = "close"
    CLEAR = "clear"


class DocType(StrEnum):
    SELL = "SELL"
    PAYBACK = "PAYBACK"
    BUY = "BUY"
    BUYBACK = "BUYBACK"
    OTHER = "OTHER"  # corrections and anything newer: acknowledged, never discounted


_CALC = re.compile(
    r"^evo\.v2\.receipt\.(sell|payback|paybackWithSell|buy|buyback|buybackWithBuy)\.receiptDiscount$"
)
_BROADCAST = re.compile(
    r"^evotor\.intent\.action\.receipt\.(sell|payback|buy|buyback)\.(RECEIPT_CLOSED|CLEARED)$"
)
_CALC_TYPES = {"sell": DocType.SELL, "buy": DocType.BUY}


@dataclass(frozen=True, slots=True)
class Position:
    uuid: str
    product_uuid: str
    product_code: str
    name: str
    measure_name: str
    measure_precision: int
    price: int  # unit price before any discount, kopecks
    price_with_discount: int  # unit price after the position discount, kopecks
    qty_milli: int
    barcode: str = ""


@dataclass(frozen=True, slots=True)
class Tender:
    kind: str  # cash, card, other
    amount: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The SDK ``Receipt`` as our plugin forwards it."""

    uuid: str
    base_uuid: str
    number: str
    doc_type: DocType
    date: datetime | None
    session: str
    extra: dict[str, object]
    positions: tuple[Position, ...]
    payments: tuple[Tender, ...]
    discounts: dict[str, int]  # position uuid -> that position's share of the receipt discount
    client_phone: str = ""


@dataclass(frozen=True, slots=True)
class Loyalty(fields.Entered):
    """What the cashier entered in our plugin's UI."""

    app_code: str = ""
    qr: str = ""


@dataclass(frozen=True, slots=True)
class Device:
    store_uuid: str
    device_uuid: str
    user_id: str


@dataclass(frozen=True, slots=True)
class PluginMessage:
    action: str
    kind: Kind
    doc_type: DocType
    device: Device
    loyalty: Loyalty
    receipt_uuid: str
    event_discount: int  # receipt-level discount already on the receipt, kopecks
    snapshot: Snapshot | None


def parse_plugin(body: bytes) -> PluginMessage:
    root = obj(loads(body), "body")
    action = text(root.get("action"), "action", required=True)
    if m := _CALC.match(action):
        kind, doc_type = Kind.CALC, _CALC_TYPES.get(m.group(1), DocType.PAYBACK)
        if m.group(1).startswith("buyback"):
            doc_type = DocType.BUYBACK
    elif m := _BROADCAST.match(action):
        kind = Kind.CLOSE if m.group(2) == "RECEIPT_CLOSED" else Kind.CLEAR
        doc_type = DocType(m.group(1).upper())
    else:
        raise BadInput(f"unknown action {action[:80]!r}", "action")
    dev = opt_obj(root.get("device"), "device")
    device = Device(
        store_uuid=ident(dev.get("storeUuid"), "device.storeUuid", required=False),
        device_uuid=ident(dev.get("deviceUuid"), "device.deviceUuid", required=False),
        user_id=ident(dev.get("userId"), "device.userId", required=False),
    )
    event = opt_obj(root.get("event"), "event")
    snap_raw = root.get("receipt")
    snapshot = None if snap_raw is None else parse_snapshot(snap_raw, "receipt")
    receipt_uuid = ident(event.get("receiptUuid"), "event.receiptUuid", required=False)
    if not receipt_uuid and snapshot is not None:
        receipt_uuid = snapshot.uuid
    if not receipt_uuid:
        raise BadInput("is required", "event.receiptUuid")
    if kind is not Kind.CLEAR and snapshot is None:
        raise BadInput("the receipt snapshot is required for this action", "receipt")
    if snapshot is not None and snapshot.doc_type is not DocType.OTHER and kind is Kind.CLOSE:
        doc_type = snapshot.doc_type
    return PluginMessage(
        action=action, kind=kind, doc_type=doc_type, device=device,
        loyalty=parse_loyalty(root.get("loyalty"), "loyalty"), receipt_uuid=receipt_uuid,
        event_discount=kopecks(event.get("discount"), "event.discount", default=0),
        snapshot=snapshot,
    )


def parse_loyalty(value: object, where: str) -> Loyalty:
    raw = opt_obj(value, where)
    points, redeem_max = fields.redeem(raw.get("redeem"), f"{where}.redeem")
    if raw.get("redeemMax") is True:
        points, redeem_max = 0, True
    return Loyalty(
        card=ident(raw.get("card"), f"{where}.card", required=False),
        phone=ident(raw.get("phone"), f"{where}.phone", required=False),
        app_code=ident(raw.get("appCode"), f"{where}.appCode", required=False),
        qr=text(raw.get("qr"), f"{where}.qr", limit=1024),
        redeem_points=points, redeem_max=redeem_max,
    )


def parse_position(value: object, where: str) -> Position:
    raw = obj(value, where)
    price = kopecks(raw.get("price"), f"{where}.price")
    precision = raw.get("measurePrecision", 0)
    if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 6:
        raise BadInput("must be an integer 0..6", f"{where}.measurePrecision")
    return Position(
        uuid=ident(raw.get("uuid"), f"{where}.uuid"),
        product_uuid=ident(raw.get("productUuid"), f"{where}.productUuid", required=False),
        product_code=ident(raw.get("productCode"), f"{where}.productCode", required=False),
        name=text(raw.get("name"), f"{where}.name"),
        measure_name=text(raw.get("measureName"), f"{where}.measureName", limit=32),
        measure_precision=precision,
        price=price,
        price_with_discount=kopecks(
            raw.get("priceWithDiscountPosition"), f"{where}.priceWithDiscountPosition", default=price
        ),
        qty_milli=milli(raw.get("quantity"), f"{where}.quantity"),
        barcode=text(raw.get("barcode"), f"{where}.barcode", limit=64),
    )


_TENDERS = {"CASH": "cash", "ELECTRON": "card", "CARD": "card"}


def parse_snapshot(value: object, where: str) -> Snapshot:
    raw = obj(value, where)
    header = obj(raw.get("header"), f"{where}.header")
    docs = opt_lst(raw.get("printDocuments"), f"{where}.printDocuments")
    positions: list[Position] = []
    payments: list[Tender] = []
    discounts: dict[str, int] = {}
    for i, doc_raw in enumerate(docs):
        at = f"{where}.printDocuments[{i}]"
        doc = obj(doc_raw, at)
        for j, pos in enumerate(opt_lst(doc.get("positions"), f"{at}.positions")):
            positions.append(parse_position(pos, f"{at}.positions[{j}]"))
            if len(positions) > MAX_LINES:
                raise BadInput(f"at most {MAX_LINES} positions", f"{at}.positions")
        for j, pay in enumerate(opt_lst(doc.get("payments"), f"{at}.payments")):
            p = obj(pay, f"{at}.payments[{j}]")
            system = opt_obj(p.get("system"), f"{at}.payments[{j}].system")
            ptype = text(system.get("paymentType"), f"{at}.payments[{j}].system.paymentType")
            kind = _TENDERS.get(ptype, "other")
            amount = p.get("amount", p.get("value"))
            payments.append(Tender(kind, kopecks(amount, f"{at}.payments[{j}].amount")))
        for key, share in opt_obj(doc.get("discounts"), f"{at}.discounts").items():
            amount = kopecks(share, f"{at}.discounts.{key[:40]}")
            discounts[key[:MAX_ID]] = discounts.get(key[:MAX_ID], 0) + amount
    type_raw = text(header.get("type"), f"{where}.header.type", required=True)
    extra_raw = header.get("extra")
    extra: dict[str, object] = {}
    if isinstance(extra_raw, str) and extra_raw.strip():
        try:
            parsed = loads(extra_raw)
        except BadInput:
            parsed = None  # another app's extra that is not JSON: not ours, ignore it
        extra = parsed if isinstance(parsed, dict) else {}
    elif isinstance(extra_raw, dict):
        extra = extra_raw
    return Snapshot(
        uuid=ident(header.get("uuid"), f"{where}.header.uuid"),
        base_uuid=ident(header.get("baseReceiptUuid"), f"{where}.header.baseReceiptUuid", required=False),
        number=ident(header.get("number"), f"{where}.header.number", required=False),
        doc_type=DocType(type_raw) if type_raw in DocType.__members__ else DocType.OTHER,
        date=timestamp(header.get("date"), f"{where}.header.date"),
        session=ident(header.get("sessionNumber"), f"{where}.header.sessionNumber", required=False),
        extra=extra, positions=tuple(positions), payments=tuple(payments), discounts=discounts,
        client_phone=ident(header.get("clientPhone"), f"{where}.header.clientPhone", required=False),
    )


# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class DiscountAnswer:
    """``ReceiptDiscountEventResult`` keys (kopecks here, rubles on the wire)."""

    discount: int
    position_discounts: tuple[tuple[str, int], ...]
    extra: dict[str, object]
    print_text: str = ""


def render_discount(answer: DiscountAnswer | None) -> bytes:
    """``{"callback":"onResult",...}`` or ``{"callback":"skip"}`` (never ``onError``)."""
    if answer is None:
        return b'{"callback":"skip"}'
    out: dict[str, object] = {
        "callback": "onResult",
        "result": {
            "discount": rubles(answer.discount),
            "changes": [],
            "positionUuidToDiscountMap": {uuid: rubles(d) for uuid, d in answer.position_discounts},
            "extra": answer.extra,
        },
    }
    if answer.print_text:
        out["printText"] = answer.print_text
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


render_accepted = http_edge.render_accepted  # our plugins' answer to a commit


def render_error(code: int, reason: str, subject: str = "", value: str = "") -> bytes:
    """Evotor's error body: ``{"errors":[{"code","reason","subject"?,"value"?}]}``."""
    err: dict[str, object] = {"code": code, "reason": reason}
    if subject:
        err["subject"] = subject[:200]
    if value:
        err["value"] = value[:200]
    return json.dumps({"errors": [err]}, ensure_ascii=False, separators=(",", ":")).encode()
