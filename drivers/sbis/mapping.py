"""SBIS fiscal documents -> canonical receipts and events; returns matched to their sales: pure.

Invariants:
- the key of a document is ``sbis:<fiscal drive number>:<fiscal document number>`` (the pair is
  unique for ever in Russian fiscal law), whatever window or re-read brought it;
- money is integer kopecks as the OFD writes it; quantities may be fractional (Decimal, never
  float) and become thousandths; items must add up to ``totalSum`` or the document is BadInput;
- ``dateTime`` is read in ``doc_time_zone``'s wall clock (see README: inferred) and becomes an
  aware UTC time;
- the customer is the phone printed on the receipt (``buyerPhoneOrAddress``), read by
  :func:`gateway.fields.customer` and kept as typed (normalising it is the core's business, as for
  every driver); an e-mail or nothing gives no customer (the pipeline may still bind one); a value
  that is neither an e-mail nor a readable phone gives no customer either, and :func:`buyer` says
  why (the driver logs it and raises an alarm: never a silent anonymous sale);
- the return index groups sales by :func:`index_phone` (a matching key, not what the core gets),
  so a sale typed ``8 916 ...`` and its return typed ``+7916...`` meet;
- a return (operationType 2) carries no link to its sale: :func:`match_return` picks the sale
  from the driver's index deterministically; the decision is stored before the event is, so a
  re-read builds the same event (same key, same content).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from drivers.sbis import NAME
from gateway import fields
from gateway.errors import BadInput
from gateway.receipt import (
    MAX_AMOUNT,
    CustomerId,
    Event,
    EventKind,
    IdKind,
    Line,
    Payment,
    Receipt,
    RefundLine,
    sale_event,
    to_milli,
)

SALE, SALE_RETURN = 1, 2
PAYMENTS = (
    ("cashTotalSum", "cash"),
    ("ecashTotalSum", "card"),
    ("prepaidSum", "other"),
    ("creditSum", "other"),
    ("provisionSum", "other"),
)
_DIGITS = re.compile(r"\D")


def doc_key(fn: str, fd: int) -> str:
    return f"{NAME}:{fn}:{fd}"


def doc_id(fn: str, fd: int | None) -> str:
    return f"{fn}:{fd if fd is not None else '?'}"


@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo | None:
    return None if name in ("", "UTC") else ZoneInfo(name)


def occurred_at(raw: float, zone: str) -> datetime:
    """A document's raw ``dateTime`` (wall clock of ``zone`` read as UTC) -> aware UTC time."""
    wall = datetime(1970, 1, 1) + timedelta(seconds=raw)
    tz = _zone(zone)
    return wall.replace(tzinfo=UTC) if tz is None else wall.replace(tzinfo=tz).astimezone(UTC)


def raw_of(when: datetime, zone: str) -> float:
    """An aware time -> raw seconds in the documents' frame (the inverse of :func:`occurred_at`)."""
    tz = _zone(zone)
    local = when.astimezone(UTC) if tz is None else when.astimezone(tz)
    return local.replace(tzinfo=UTC).timestamp()


def buyer(value: Any) -> tuple[CustomerId | None, str]:
    """``buyerPhoneOrAddress`` -> (the customer, why there is none).

    A phone is read by :func:`gateway.fields.customer` and kept as typed, marked a contact (the
    buyer left it for the e-receipt: a phone the core does not know sells without loyalty instead
    of going to the operator queue, ``CustomerRef.if_known``); an e-mail, nothing or a
    blank gives ``(None, "")`` (no customer, nothing wrong); anything else (letters, a phone
    with an extension, a boolean) gives ``(None, <why>)``: the receipt is still
    accrued, anonymously, and the caller must say so."""
    if value is None or (isinstance(value, str) and (not value.strip() or "@" in value)):
        return None, ""
    try:
        return fields.customer(IdKind.PHONE, value, "buyerPhoneOrAddress", contact=True), ""
    except BadInput as exc:
        return None, str(exc)


def index_phone(value: str) -> str:
    """The return index's key for a customer's phone: ``+7XXXXXXXXXX`` for a Russian mobile however
    typed (``8 916 ...``, ``+7 (916) ...``, ``916...``), else its digits (the leading 7 or 8 of
    eleven dropped, so ``8 495 ...`` and ``+7 495 ...`` meet too); a matching key only: the core
    gets the phone as typed."""
    digits = _DIGITS.sub("", value)
    if len(digits) == 11 and digits[0] in "78":
        digits = digits[1:]
    if len(digits) == 10 and digits[0] == "9":
        return "+7" + digits
    return digits


def _kopecks(body: Mapping[str, Any], name: str, *, required: bool = False) -> int:
    value = body.get(name)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
        raise BadInput("must be an integer of kopecks between 0 and 10^13", name)
    return value


def _text(body: Mapping[str, Any], name: str, limit: int = 256) -> str:
    value = body.get(name)
    if isinstance(value, str):
        return value.strip()[:limit]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _lines(body: Mapping[str, Any]) -> tuple[Line, ...]:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise BadInput("a receipt needs at least one item", "items")
    lines = []
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            raise BadInput("must be an object", where)
        qty = item.get("quantity")
        if isinstance(qty, bool) or not isinstance(qty, int | Decimal):
            raise BadInput("must be a number", f"{where}.quantity")
        name = "".join(ch for ch in _text(item, "name") if ch.isprintable())
        lines.append(
            Line(
                str(i + 1),
                "",
                name,
                _kopecks(item, "price", required=True),
                to_milli(qty, f"{where}.quantity"),
                _kopecks(item, "sum", required=True),
            )
        )
    return tuple(lines)


def receipt_of(
    body: Mapping[str, Any], *, fn: str, fd: int, register_id: str, zone: str, store_id: str = ""
) -> Receipt:
    """The canonical receipt of a ``receipt`` document (sale or return); BadInput naming the field."""
    lines = _lines(body)
    total = _kopecks(body, "totalSum", required=True)
    if sum(ln.amount for ln in lines) != total:
        raise BadInput(f"items add up to {sum(ln.amount for ln in lines)}, not {total}", "totalSum")
    at = body.get("dateTime")
    if isinstance(at, bool) or not isinstance(at, int):
        raise BadInput("must be seconds (an integer)", "dateTime")
    try:
        when = occurred_at(float(at), zone)
    except (OverflowError, ValueError) as exc:
        raise BadInput(f"not a time: {at}", "dateTime") from exc
    who, _ = buyer(body.get("buyerPhoneOrAddress"))
    payments = tuple(Payment(kind, _kopecks(body, name)) for name, kind in PAYMENTS if _kopecks(body, name))
    receipt = Receipt(
        register_id=register_id,
        receipt_number=str(fd),
        lines=lines,
        occurred_at=when,
        shift=_text(body, "shiftNumber", 32),
        fiscal_sign=_text(body, "fiscalSign", 32),
        document_id=doc_id(fn, fd),
        cashier_name=_text(body, "operator", 128),
        store_id=store_id,
        customer=who,
        payments=payments,
        driver=NAME,
    )
    return receipt.validate()


def operation(body: Mapping[str, Any]) -> int:
    op = body.get("operationType")
    if isinstance(op, bool) or not isinstance(op, int):
        raise BadInput("must be 1, 2, 3 or 4", "operationType")
    return op


# ------------------------------------------------------------------ returns


@dataclass(frozen=True, slots=True)
class SaleEntry:
    """A sale as the return index remembers it: what is left to return, per line."""

    key: str
    at: float  # raw dateTime
    total: int  # kopecks sold
    left: int  # kopecks not yet refunded
    lines: tuple[tuple[str, str, int, int], ...]  # (line_id, name, price, qty_milli left)
    by_amount: bool = False  # refunded by amount once: every later refund is by amount too

    def to_json(self) -> list[Any]:
        return [self.key, self.at, self.total, self.left, [list(x) for x in self.lines], self.by_amount]

    @classmethod
    def from_json(cls, row: list[Any]) -> SaleEntry:
        key, at, total, left, lines, by_amount = row
        return cls(
            str(key),
            float(at),
            int(total),
            int(left),
            tuple((str(a), str(b), int(c), int(d)) for a, b, c, d in lines),
            bool(by_amount),
        )


def sale_entry(receipt: Receipt, key: str, at: float) -> SaleEntry:
    return SaleEntry(
        key,
        at,
        receipt.total,
        receipt.total,
        tuple((ln.line_id, ln.name, ln.price, ln.qty_milli) for ln in receipt.lines),
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """How a return is refunded: lines of a sale, the whole sale, an amount of a sale, or an amount
    of no known sale (``sale_key`` empty: the core cannot apply it, the operator queue shows it)."""

    sale_key: str = ""
    lines: tuple[tuple[str, int], ...] = ()
    full: bool = False
    amount: int = 0
    why: str = field(default="", compare=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "sale": self.sale_key,
                "lines": [list(x) for x in self.lines],
                "full": self.full,
                "amount": self.amount,
                "why": self.why,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Decision:
        d = json.loads(text)
        return cls(
            str(d["sale"]),
            tuple((str(a), int(b)) for a, b in d["lines"]),
            bool(d["full"]),
            int(d["amount"]),
            str(d.get("why", "")),
        )


def _take_lines(entry: SaleEntry, items: Sequence[Line]) -> tuple[tuple[str, int], ...] | None:
    """The sale's (line_id, qty) covering every returned item by name and price, or None."""
    left = {ln[0]: ln[3] for ln in entry.lines}
    taken: dict[str, int] = {}
    for item in items:
        want = item.qty_milli
        for line_id, name, price, _ in entry.lines:
            if name == item.name and price == item.price and left[line_id] > 0 and want > 0:
                take = min(want, left[line_id])
                left[line_id] -= take
                taken[line_id] = taken.get(line_id, 0) + take
                want -= take
        if want > 0:
            return None
    return tuple(sorted(taken.items()))


def match_return(ret: Receipt, entries: Sequence[SaleEntry], at: float) -> tuple[Decision, SaleEntry | None]:
    """The decision for return ``ret`` made at raw time ``at`` among ``entries`` (the index of its
    register and customer), and the matched entry as it is after the refund (None: unmatched).

    Most recent sale first, only sales made before the return: (1) the first whose remaining lines
    hold every returned item (name, price, quantity): refund those lines, or the whole sale when
    nothing of it was refunded before and everything is returned; (2) else the first with at least
    the return's total left: refund that amount; (3) else an amount of no known sale."""
    candidates = sorted((e for e in entries if e.at <= at and e.left > 0), key=lambda e: e.at, reverse=True)
    for entry in candidates:
        if entry.by_amount:
            continue
        lines = _take_lines(entry, ret.lines)
        if lines is None:
            continue
        taken = dict(lines)
        new_lines = tuple((a, b, c, d - taken.get(a, 0)) for a, b, c, d in entry.lines)
        after = replace(entry, left=max(0, entry.left - ret.total), lines=new_lines)
        if entry.left == entry.total and all(ln[3] == 0 for ln in new_lines):
            return Decision(entry.key, full=True, why="every line of the sale"), after
        return Decision(entry.key, lines=lines, why="lines of the sale"), after
    for entry in candidates:
        if entry.left >= ret.total:
            return (
                Decision(entry.key, amount=ret.total, why="amount of the sale"),
                replace(entry, left=entry.left - ret.total, by_amount=True),
            )
    return Decision(amount=ret.total, why="no sale of this register and customer matches"), None


# ------------------------------------------------------------------ events


def sale_of(receipt: Receipt, key: str) -> Event:
    return sale_event(receipt, key=key)


def refund_of(receipt: Receipt, key: str, decision: Decision) -> Event:
    return Event(
        kind=EventKind.REFUND,
        key=key,
        register_id=receipt.register_id,
        occurred_at=receipt.occurred_at,
        receipt=receipt,
        sale_key=decision.sale_key,
        refund_lines=tuple(RefundLine(a, b) for a, b in decision.lines),
        refund_full=decision.full,
        refund_amount=decision.amount,
        cashier_name=receipt.cashier_name,
    )
