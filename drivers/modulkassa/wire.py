"""Modul Kassa on the wire: the flattened loyalty-request Bundle, check broadcasts, and answers.

Pure. Our plugin flattens the SDK Bundle to JSON with the same keys and string values
(``request_id``, ``positions``, ``position/{id}/price`` ...; numbers are
``BigDecimal.toPlainString()``), so money arrives as ruble strings and becomes integer
kopecks here (half-up), quantities become thousandths. Enum names (``type``, ``measure``)
are matched case-insensitively (the cloud APIs write ``pcs``); an unknown measure is
treated as not piece goods, so it is never split. The broadcast's ``check`` extra is a
Gson JSON string inside the JSON body: decoded twice (an object is tolerated).

Invariant: malformed input raises :class:`gateway.errors.BadInput` naming the field, and
nothing else escapes the parsers. The answer renderer writes exactly the keys of the
SDK's ``LoyaltyResult`` Bundle and never a blank ``printable_data``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from gateway import fields, http_edge
from gateway.errors import BadInput
from gateway.fields import kopecks, loads, milli, obj, opt_lst, opt_obj, rubles, text, timestamp
from gateway.receipt import MAX_LINES

MAX_ID = 255  # the SDK's limit on impact and position ids
MAX_BLOB = 32000  # data and printable_data

PIECE_MEASURES = frozenset({"PCS"})
CLOSED = "ru.modulkassa.pos.events.CHECK_CLOSED"
CANCELLED = "ru.modulkassa.pos.events.CHECK_CANCELLED"
MODIFIED = "ru.modulkassa.pos.events.CHECK_MODIFIED"
MAIN_SCREEN = "ru.modulkassa.pos.events.UI_RETURN_TO_MAIN_SCREEN"
ACTIONS = frozenset({CLOSED, CANCELLED, MODIFIED, MAIN_SCREEN})

# ---------------------------------------------------------------- JSON (readers: gateway.fields)


def quantity_text(qty_milli: int, *, piece: bool) -> str:
    """Thousandths -> ``"2"`` for piece goods, ``"0.350"`` for weight goods."""
    if piece and qty_milli % 1000 == 0:
        return str(qty_milli // 1000)
    whole, frac = divmod(qty_milli, 1000)
    return f"{whole}.{frac:03d}"


# ---------------------------------------------------------------- loyalty-request


@dataclass(frozen=True, slots=True)
class Loyalty(fields.Entered):
    """What the cashier entered in our plugin (the request itself has no customer field)."""

    doc_type: str = ""  # SALE | RETURN when the plugin knows it
    device: str = ""  # the register's id, when the plugin knows it
    data: str = ""  # on events: the data blob we answered for this check
    sale_check_id: str = ""  # on returns: the sale's check id, when the plugin knows it


@dataclass(frozen=True, slots=True)
class MkPosition:
    position_id: str
    invent_code: str
    barcode: str
    name: str
    type: str
    measure: str
    price: int  # unit price incl. modifiers, after Modul Kassa's own discounts, kopecks
    qty_milli: int
    has_modifiers: bool

    @property
    def piece(self) -> bool:
        return self.measure in PIECE_MEASURES and self.qty_milli % 1000 == 0


@dataclass(frozen=True, slots=True)
class LoyaltyRequest:
    request_id: str
    retail_point_id: str
    user_id: str
    positions: tuple[MkPosition, ...]
    loyalty: Loyalty


def parse_loyalty(value: object) -> Loyalty:
    raw = opt_obj(value, "loyalty")
    points, redeem_max = fields.redeem(raw.get("redeem"), "loyalty.redeem")
    return Loyalty(
        card=text(raw.get("card"), "loyalty.card", limit=128),
        phone=text(raw.get("phone"), "loyalty.phone", limit=64),
        redeem_points=points, redeem_max=redeem_max,
        doc_type=text(raw.get("docType"), "loyalty.docType", limit=32).upper(),
        device=text(raw.get("device"), "loyalty.device", limit=128),
        data=text(raw.get("data"), "loyalty.data", limit=MAX_BLOB),
        sale_check_id=text(raw.get("saleCheckId"), "loyalty.saleCheckId", limit=MAX_ID),
    )


def parse_operation(body: bytes) -> LoyaltyRequest:
    root = obj(loads(body), "body")
    operation = text(root.get("operation"), "operation", required=True, limit=64)
    if operation != "loyalty-request":
        raise BadInput(f"unsupported operation {operation!r}", "operation")
    data = obj(root.get("data"), "data")
    ids = opt_lst(data.get("positions"), "data.positions")
    if len(ids) > MAX_LINES:
        raise BadInput(f"at most {MAX_LINES} positions", "data.positions")
    positions: list[MkPosition] = []
    seen: set[str] = set()
    for i, raw_id in enumerate(ids):
        pid = text(raw_id, f"data.positions[{i}]", required=True, limit=MAX_ID)
        if pid in seen:
            raise BadInput(f"duplicate position id {pid[:40]!r}", f"data.positions[{i}]")
        seen.add(pid)
        positions.append(_position(data, pid))
    return LoyaltyRequest(
        request_id=text(data.get("request_id"), "data.request_id", required=True, limit=MAX_ID),
        retail_point_id=text(data.get("retail_point_id"), "data.retail_point_id", limit=MAX_ID),
        user_id=text(data.get("user_id"), "data.user_id", limit=MAX_ID),
        positions=tuple(positions), loyalty=parse_loyalty(root.get("loyalty")),
    )


def _position(data: dict[str, object], pid: str) -> MkPosition:
    key = f"position/{pid}/"

    def get(name: str, *, required: bool = False, limit: int = 512) -> str:
        return text(data.get(key + name), f"data.{key}{name}"[:300], required=required, limit=limit)

    modifiers = opt_lst(data.get(key + "modifiers"), f"data.{key}modifiers"[:300])
    return MkPosition(
        position_id=pid, invent_code=get("invent_code", limit=128), barcode=get("barcode", limit=128),
        name=get("name"), type=get("type", limit=32).upper() or "INVENTORY",
        measure=get("measure", limit=32).upper() or "PCS",
        price=kopecks(data.get(key + "price"), f"data.{key}price"[:300]),
        qty_milli=milli(data.get(key + "quantity"), f"data.{key}quantity"[:300]),
        has_modifiers=bool(modifiers),
    )


# ---------------------------------------------------------------- check broadcasts


@dataclass(frozen=True, slots=True)
class CheckLine:
    invent_code: str
    barcode: str
    name: str
    price: int  # unit price, kopecks
    qty_milli: int
    amount: int | None  # after all discounts, kopecks, when given
    discount: int  # discountAmount, kopecks


@dataclass(frozen=True, slots=True)
class Check:
    check_id: str
    doc_type: str  # SALE | RETURN | SALE_CORRECTION | SALE_RETURN_CORRECTION
    lines: tuple[CheckLine, ...]
    payments: tuple[tuple[str, int], ...]
    retail_point_id: str
    employee_id: str
    employee: str
    occurred_at: datetime | None
    number: str
    shift: str
    fiscal_sign: str


@dataclass(frozen=True, slots=True)
class CheckEvent:
    action: str
    check_id: str
    check_sum: int
    check: Check | None
    loyalty: Loyalty


def parse_event(body: bytes) -> CheckEvent:
    root = obj(loads(body), "body")
    action = text(root.get("action"), "action", required=True, limit=128)
    if action not in ACTIONS:
        raise BadInput(f"unknown broadcast {action[:80]!r}", "action")
    extras = obj(root.get("extras"), "extras")
    check_id = text(extras.get("check_id"), "extras.check_id", required=True, limit=MAX_ID)
    raw_check = extras.get("check")
    check = None
    if raw_check is not None and raw_check != "":
        embedded = loads(raw_check, "extras.check") if isinstance(raw_check, str) else raw_check
        check = parse_check(embedded, "extras.check")
    if action == CLOSED and check is None:
        raise BadInput("a closed check must carry its details", "extras.check")
    return CheckEvent(action=action, check_id=check_id,
                      check_sum=kopecks(extras.get("check_sum"), "extras.check_sum", default=0),
                      check=check, loyalty=parse_loyalty(root.get("loyalty")))


def parse_check(value: object, where: str) -> Check:
    """A Gson-serialized ``Check`` (camelCase)."""
    raw = obj(value, where)
    check_id = text(raw.get("id"), f"{where}.id", required=True, limit=MAX_ID)
    doc_type = text(raw.get("docType", raw.get("documentType")), f"{where}.docType", required=True,
                    limit=32).upper()
    refund = "RETURN" in doc_type  # a return may state its figures negative; a sale never

    def money(src: dict[str, object], key: str, w: str, default: int | None = None) -> int:
        where_key = f"{w}.{key}"
        return fields.unsigned(kopecks(src.get(key), where_key, default=default), where_key, refund=refund)

    lines: list[CheckLine] = []
    for i, pos_raw in enumerate(opt_lst(raw.get("inventPositions"), f"{where}.inventPositions")):
        w = f"{where}.inventPositions[{i}]"
        pos = obj(pos_raw, w)
        lines.append(CheckLine(
            invent_code=text(pos.get("inventCode"), f"{w}.inventCode", limit=128),
            barcode=text(pos.get("barcode"), f"{w}.barcode", limit=128),
            name=text(pos.get("name"), f"{w}.name"),
            price=money(pos, "price", w),
            qty_milli=fields.unsigned(milli(pos.get("quantity"), f"{w}.quantity"), f"{w}.quantity",
                                      refund=refund),
            amount=None if pos.get("amount") is None else money(pos, "amount", w),
            discount=money(pos, "discountAmount", w, default=0),
        ))
        if len(lines) > MAX_LINES:
            raise BadInput(f"at most {MAX_LINES} positions", f"{where}.inventPositions")
    payments = []
    for i, pay_raw in enumerate(opt_lst(raw.get("moneyPositions"), f"{where}.moneyPositions")):
        pay = obj(pay_raw, f"{where}.moneyPositions[{i}]")
        kind = text(pay.get("paymentType"), f"{where}.moneyPositions[{i}].paymentType", limit=32).lower()
        payments.append((kind or "other", money(pay, "sum", f"{where}.moneyPositions[{i}]")))
    fiscal = opt_obj(raw.get("fiscalInfo"), f"{where}.fiscalInfo")
    return Check(
        check_id=check_id,
        doc_type=doc_type,
        lines=tuple(lines), payments=tuple(payments),
        retail_point_id=text(raw.get("retailPointId"), f"{where}.retailPointId", limit=MAX_ID),
        employee_id=text(raw.get("employeeId"), f"{where}.employeeId", limit=MAX_ID),
        employee=text(raw.get("employee", raw.get("cashierName")), f"{where}.employee"),
        occurred_at=timestamp(raw.get("dateTime", raw.get("checkoutDateTime")), f"{where}.dateTime", limit=64)
        or timestamp(fiscal.get("date"), f"{where}.fiscalInfo.date", limit=64),
        number=text(raw.get("number", fiscal.get("checkNumber")), f"{where}.number", limit=64),
        shift=text(fiscal.get("shiftNumber"), f"{where}.fiscalInfo.shiftNumber", limit=64),
        fiscal_sign=text(fiscal.get("fnDocMark"), f"{where}.fiscalInfo.fnDocMark", limit=64),
    )


# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Impact:
    impact_id: str
    position_id: str
    price: int  # final unit price, kopecks
    qty_milli: int
    piece: bool


@dataclass(frozen=True, slots=True)
class LoyaltyAnswer:
    impacts: tuple[Impact, ...]
    data: str = ""
    printable: str = ""


def render_succeeded(answer: LoyaltyAnswer) -> bytes:
    data: dict[str, object] = {"request_type": "LOYALTY", "impacts": [i.impact_id for i in answer.impacts]}
    for imp in answer.impacts:
        data[f"impact/{imp.impact_id}/position_id"] = imp.position_id
        data[f"impact/{imp.impact_id}/price"] = rubles(imp.price)
        data[f"impact/{imp.impact_id}/quantity"] = quantity_text(imp.qty_milli, piece=imp.piece)
    if answer.data:
        data["data"] = answer.data
    if answer.printable.strip():
        data["printable_data"] = answer.printable
    out = {"result": "succeeded", "data": data}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def render_failed(message: str, field: str = "") -> bytes:
    out = {"result": "failed", "message": message[:500]}
    if field:
        out["field"] = field[:300]
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


render_accepted = http_edge.render_accepted  # our plugins' answer to a commit
