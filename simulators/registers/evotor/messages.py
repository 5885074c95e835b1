"""An Evotor receipt as the terminal holds it, the messages built from it, and applying an answer (pure).

Built from ``shared/protocols/evotor.md`` (§2 plugin envelope and SDK ``Receipt`` snapshot, §3
cloud ``ReceiptCreated`` webhook), never from ``drivers/evotor``:

- money on the device is rubles as strings (``"199.90"``), in the cloud JSON numbers; ids are
  uuid4 (store ids date-prefixed); weight lines have ``measurePrecision`` 3 and fractional
  quantities; a free-price line has ``productUuid: null``;
- :func:`apply_answer` applies a ``receiptDiscount`` answer the way the terminal does:
  ``skip`` changes nothing; ``onResult`` sets the receipt discount to ``result.discount``,
  split by ``positionUuidToDiscountMap`` (pro rata by position sum without one) and writes
  ``result.extra`` into the receipt's extra. A map naming unknown positions or adding up to
  anything but ``discount``, a negative value, ``onError``, or a receipt left with a negative
  line is refused (:class:`AnswerError`): the receipt stays at full price.

Invariants: integer kopecks and thousandths inside, strings only at the edge; a receipt's
uuid is fixed when it is rung up, so every resend and the cloud copy carry the same id.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from simulators.registers.common import Num, kopecks, line_sum, qty_text, receipt_problems, rubles

CALC = "evo.v2.receipt.{kind}.receiptDiscount"
CLOSED = "evotor.intent.action.receipt.{kind}.RECEIPT_CLOSED"
CLEARED = "evotor.intent.action.receipt.sell.CLEARED"
_PRODUCTS = uuid.UUID("6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e")  # namespace of simulated product uuids
_TENDER = {"card": "ELECTRON", "cash": "CASH"}


class AnswerError(Exception):
    """A calc answer the terminal refuses; the message lists every problem."""


def product_uuid(sku: str) -> str:
    return str(uuid.uuid5(_PRODUCTS, sku))


@dataclass(frozen=True, slots=True)
class Position:
    uuid: str
    product_uuid: str | None  # None: a free-price item
    code: str | None
    name: str
    weighted: bool
    price: int  # unit price, kopecks
    price_with_discount: int  # unit price after the position (till promo) discount
    qty_milli: int
    barcode: str = ""

    @property
    def sum(self) -> int:
        return line_sum(self.price_with_discount, self.qty_milli)

    def to_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "productUuid": self.product_uuid,
            "productCode": self.code,
            "productType": "NORMAL",
            "name": self.name,
            "measureName": "кг" if self.weighted else "шт",
            "measurePrecision": 3 if self.weighted else 0,
            "price": rubles(self.price),
            "priceWithDiscountPosition": rubles(self.price_with_discount),
            "quantity": qty_text(self.qty_milli, weighted=self.weighted),
            "barcode": self.barcode,
        }


@dataclass(frozen=True, slots=True)
class Device:
    store_uuid: str
    device_uuid: str
    user_id: str

    def to_json(self) -> dict[str, str]:
        return {"storeUuid": self.store_uuid, "deviceUuid": self.device_uuid, "userId": self.user_id}


@dataclass(frozen=True, slots=True)
class Applied:
    """What the terminal applied: the receipt discount, its split, our extra, the slip text."""

    discount: int = 0
    shares: dict[str, int] = field(default_factory=dict)  # position uuid -> kopecks
    extra: dict[str, Any] | None = None
    print_text: str = ""
    skipped: bool = True


@dataclass(frozen=True, slots=True)
class EvReceipt:
    """One receipt on the terminal (sell or payback)."""

    uuid: str
    device: Device
    session: str
    positions: tuple[Position, ...]
    kind: str = "sell"  # sell | payback
    base_uuid: str | None = None
    loyalty: dict[str, str] = field(default_factory=dict)  # what the cashier entered in our plugin
    number: str | None = None  # set when it closes
    date: str | None = None

    @property
    def doc_type(self) -> str:
        return "SELL" if self.kind == "sell" else "PAYBACK"

    @property
    def gross(self) -> int:
        return sum(p.sum for p in self.positions)

    def snapshot(self, applied: Applied | None = None, *, payment: str = "card") -> dict[str, Any]:
        """The SDK ``Receipt`` as our plugin forwards it (payments only once closed)."""
        applied = applied or Applied()
        extra = None if applied.extra is None else json.dumps(applied.extra, ensure_ascii=False)
        payments = []
        if self.number is not None:
            payments = [
                {
                    "uuid": str(uuid.uuid5(_PRODUCTS, self.uuid)),
                    "value": rubles(self.payable(applied)),
                    "amount": rubles(self.payable(applied)),
                    "system": {"paymentType": _TENDER.get(payment, "CASH"), "paymentSystemId": payment},
                }
            ]
        return {
            "header": {
                "uuid": self.uuid,
                "baseReceiptUuid": self.base_uuid,
                "number": self.number,
                "type": self.doc_type,
                "date": self.date,
                "sessionNumber": self.session,
                "clientEmail": None,
                "clientPhone": None,
                "extra": extra,
            },
            "printDocuments": [
                {
                    "positions": [p.to_json() for p in self.positions],
                    "payments": payments,
                    "discounts": {k: rubles(v) for k, v in applied.shares.items() if v},
                }
            ],
        }

    def payable(self, applied: Applied) -> int:
        return self.gross - applied.discount

    def calc_body(self) -> dict[str, Any]:
        return {
            "action": CALC.format(kind=self.kind),
            "device": self.device.to_json(),
            "loyalty": dict(self.loyalty),
            "event": {"receiptUuid": self.uuid, "discount": "0"},
            "receipt": self.snapshot(),
        }

    def close_body(self, applied: Applied, *, payment: str = "card") -> dict[str, Any]:
        return {
            "action": CLOSED.format(kind=self.kind),
            "device": self.device.to_json(),
            "loyalty": dict(self.loyalty),
            "event": {"receiptUuid": self.uuid},
            "receipt": self.snapshot(applied, payment=payment),
        }

    def clear_body(self, applied: Applied) -> dict[str, Any]:
        return {
            "action": CLEARED,
            "device": self.device.to_json(),
            "loyalty": dict(self.loyalty),
            "event": {"receiptUuid": self.uuid},
            "receipt": self.snapshot(applied),
        }

    def cloud_body(
        self, applied: Applied, *, envelope_id: str, timestamp_ms: int, date_utc: str, payment: str = "card"
    ) -> dict[str, Any]:
        """The cloud's ``ReceiptCreated`` webhook for this (closed) receipt; money as JSON numbers."""
        items = []
        for p in self.positions:
            share = applied.shares.get(p.uuid, 0)
            items.append(
                {
                    "id": p.product_uuid,
                    "code": p.code,
                    "name": p.name,
                    "itemType": "NORMAL",
                    "measureName": "кг" if p.weighted else "шт",
                    "quantity": Num(qty_text(p.qty_milli, weighted=p.weighted)),
                    "price": Num(rubles(p.price_with_discount)),
                    "costPrice": Num("0"),
                    "sumPrice": Num(rubles(p.sum - share)),
                    "tax": Num("0"),
                    "taxPercent": Num("0"),
                    "discount": Num(rubles(share)),
                }
            )
        data: dict[str, Any] = {
            "id": self.uuid,
            "type": self.doc_type,
            "deviceId": self.device.device_uuid,
            "storeId": self.device.store_uuid,
            "dateTime": date_utc,
            "shiftId": self.session,
            "employeeId": self.device.user_id,
            "number": self.number,
            "paymentSource": "PAY_CARD" if payment == "card" else "PAY_CASH",
            "items": items,
            "totalTax": Num("0"),
            "totalDiscount": Num(rubles(applied.discount)),
            "totalAmount": Num(rubles(self.payable(applied))),
            "extras": applied.extra or {},
        }
        if self.base_uuid:
            data["baseReceiptId"] = self.base_uuid
        return {
            "id": envelope_id,
            "timestamp": timestamp_ms,
            "userId": self.device.user_id,
            "type": "ReceiptCreated",
            "version": 2,
            "data": data,
        }

    def document_body(
        self, applied: Applied, *, close_date: str, payment: str = "card"
    ) -> dict[str, Any]:
        """The cloud's REST-v2 document (``PUT …/stores/{store}/documents``) for this closed receipt.

        snake_case, ``version: "V2"``, ``close_date`` like ``2026-01-01T07:05:10.000+0000``, money as
        JSON numbers; positions carry ``price``/``result_price``/``sum``/``result_sum`` (``sum`` before
        any discount, ``result_sum`` after ours) and ``doc_distributed_discount``; a PAYBACK adds
        ``base_document_id`` (protocol §3).
        """
        positions = []
        for p in self.positions:
            share = applied.shares.get(p.uuid, 0)
            result_sum = p.sum - share
            positions.append(
                {
                    "product_id": p.product_uuid,
                    "product_name": p.name,
                    "code": p.code,
                    "product_type": "NORMAL",
                    "measure_name": "кг" if p.weighted else "шт",
                    "quantity": Num(qty_text(p.qty_milli, weighted=p.weighted)),
                    "price": Num(rubles(p.price_with_discount)),
                    "result_price": Num(rubles(result_sum * 1000 // p.qty_milli if p.qty_milli else 0)),
                    "sum": Num(rubles(p.sum)),
                    "result_sum": Num(rubles(result_sum)),
                    "position_discount": Num("0"),
                    "doc_distributed_discount": Num(rubles(share)),
                }
            )
        body: dict[str, Any] = {
            "positions": positions,
            "payments": [{"type": "ELECTRON" if payment == "card" else "CASH",
                          "sum": Num(rubles(self.payable(applied)))}],
            "doc_discounts": [{"discount_sum": Num(rubles(applied.discount))}] if applied.discount else [],
            "result_sum": Num(rubles(self.payable(applied))),
            "sum": Num(rubles(self.gross)),
        }
        if self.base_uuid:
            body["base_document_id"] = self.base_uuid
        return {
            "type": self.doc_type,
            "id": self.uuid,
            "extras": applied.extra or {},
            "number": int(self.number or 0),
            "close_date": close_date,
            "time_zone_offset": 10800000,
            "session_id": str(uuid.uuid5(_PRODUCTS, f"session:{self.session}")),
            "session_number": int(self.session) if self.session.isdigit() else 0,
            "close_user_id": self.device.user_id,
            "device_id": self.device.device_uuid,
            "store_id": self.device.store_uuid,
            "user_id": self.device.user_id,
            "body": body,
            "version": "V2",
        }

    def closed(self, number: str, date: str) -> EvReceipt:
        return replace(self, number=number, date=date)


def spread(total: int, weights: list[int]) -> list[int]:
    """``total`` split over ``weights`` by largest remainder (the terminal's pro-rata split)."""
    base = sum(weights)
    if not weights:
        return []
    if base <= 0:
        return [total] + [0] * (len(weights) - 1)
    shares = [total * w // base for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % base), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def apply_answer(receipt: EvReceipt, answer: Any) -> Applied:
    """Apply a ``receiptDiscount`` answer as the terminal does, or raise :class:`AnswerError`."""
    if not isinstance(answer, dict):
        raise AnswerError("answer is not an object")
    callback = answer.get("callback")
    if callback == "skip":
        return Applied()
    if callback != "onResult":
        raise AnswerError(f"callback {callback!r}: the terminal shows an error to the cashier")
    result = answer.get("result")
    if not isinstance(result, dict):
        raise AnswerError("onResult without a result object")
    problems: list[str] = []
    try:
        discount = kopecks(result.get("discount", "0"))
    except (ValueError, ArithmeticError):
        raise AnswerError(f"discount {result.get('discount')!r} is not money") from None
    if discount < 0:
        problems.append(f"negative discount {discount}")
    by_uuid = {p.uuid: p for p in receipt.positions}
    raw_map = result.get("positionUuidToDiscountMap")
    shares: dict[str, int] = {}
    if raw_map is None:
        split = spread(discount, [p.sum for p in receipt.positions])
        shares = {p.uuid: s for p, s in zip(receipt.positions, split, strict=True)}
    elif not isinstance(raw_map, dict):
        problems.append("positionUuidToDiscountMap is not an object")
    else:
        for key, value in raw_map.items():
            if key not in by_uuid:
                problems.append(f"map names unknown position {key!r}")
                continue
            try:
                shares[key] = kopecks(value)
            except (ValueError, ArithmeticError):
                problems.append(f"map value {value!r} for {key} is not money")
                continue
            if shares[key] < 0:
                problems.append(f"negative discount {shares[key]} on position {key}")
        if not problems and sum(shares.values()) != discount:
            problems.append(f"map adds up to {sum(shares.values())}, discount is {discount}")
    for change in result.get("changes") or []:
        if not isinstance(change, dict) or change.get("type") != "POSITION_EDIT":
            problems.append(f"unsupported change {change!r}")
    lines = [(p.uuid, p.sum - shares.get(p.uuid, 0)) for p in receipt.positions]
    problems += receipt_problems(lines, receipt.gross - discount)
    if problems:
        raise AnswerError("; ".join(problems))
    extra = result.get("extra")
    text = answer.get("printText")
    return Applied(
        discount=discount,
        shares=shares,
        extra=extra if isinstance(extra, dict) else None,
        print_text=text if isinstance(text, str) else "",
        skipped=False,
    )


def payback_of(
    sale: EvReceipt, applied: Applied, returned: dict[str, int], *, new_uuid: str, position_uuids: list[str]
) -> tuple[EvReceipt, Applied]:
    """A payback of ``returned`` ({sale position uuid: qty}) with the sale's discount share per unit."""
    positions: list[Position] = []
    shares: dict[str, int] = {}
    for (pos_uuid, qty), new_pos in zip(returned.items(), position_uuids, strict=True):
        pos = next(p for p in sale.positions if p.uuid == pos_uuid)
        positions.append(replace(pos, uuid=new_pos, qty_milli=qty))
        share = applied.shares.get(pos_uuid, 0) * qty // pos.qty_milli
        shares[new_pos] = min(share, line_sum(pos.price_with_discount, qty))
    payback = EvReceipt(
        uuid=new_uuid,
        device=sale.device,
        session=sale.session,
        positions=tuple(positions),
        kind="payback",
        base_uuid=sale.uuid,
        loyalty={},
    )
    return payback, Applied(discount=sum(shares.values()), shares=shares, extra=None, skipped=True)


def doc_key(receipt_uuid: str) -> str:
    """The gateway's dedup key of a closed receipt (drivers/evotor/README.md: ``evotor:doc:<uuid>``)."""
    return f"evotor:doc:{receipt_uuid}"


def cancel_key(receipt_uuid: str) -> str:
    """The gateway's key of a cleared receipt's cancel (``evotor:cancel:<uuid>``)."""
    return f"evotor:cancel:{receipt_uuid}"
