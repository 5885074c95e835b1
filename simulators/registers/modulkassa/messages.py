"""A Modul Kassa check, the loyalty-request Bundle and broadcasts built from it, applying impacts (pure).

Built from ``shared/protocols/modulkassa.md`` (§2.1 flat ``position/{id}/…`` Bundle with
string values, §2.1 ``LoyaltyResult`` impact rules, §2.2 ``CHECK_CLOSED`` with the ``check``
extra as a Gson JSON string), never from ``drivers/modulkassa``.

:func:`apply_impacts` validates the answer against the SDK rules (unique non-blank ids,
known positions, price ≥ 0, quantity > 0, whole units for piece goods, per-position
quantities adding up, ≤ 32000 blobs, no blank ``printable_data``) and turns it into the
check's (possibly split) lines: each impact becomes a line at the original price with
``discountAmount`` = (original − impact price) × quantity. The resulting check must have no
negative line and lines adding up to its sum; otherwise :class:`AnswerError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulators.registers.common import (
    Num,
    dumps,
    kopecks,
    line_sum,
    milli,
    qty_text,
    receipt_problems,
    rubles,
)

CLOSED = "ru.modulkassa.pos.events.CHECK_CLOSED"
CANCELLED = "ru.modulkassa.pos.events.CHECK_CANCELLED"
MAX_BLOB = 32000


class AnswerError(Exception):
    """An answer the register cannot apply; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class MkPosition:
    position_id: str
    invent_code: str
    barcode: str
    name: str
    weighted: bool
    price: int  # unit price, kopecks
    qty_milli: int


@dataclass(frozen=True, slots=True)
class CheckLine:
    position: MkPosition
    qty_milli: int
    amount: int  # paid, kopecks
    discount: int


def request_body(
    request_id: str, point: str, user: str, positions: tuple[MkPosition, ...], loyalty: dict[str, str]
) -> dict[str, Any]:
    """The loyalty-request Bundle flattened as our plugin forwards it (every value a string)."""
    data: dict[str, Any] = {
        "request_id": request_id,
        "retail_point_id": point,
        "user_id": user,
        "positions": [p.position_id for p in positions],
    }
    for p in positions:
        key = f"position/{p.position_id}/"
        data.update(
            {
                key + "invent_code": p.invent_code,
                key + "barcode": p.barcode,
                key + "name": p.name,
                key + "type": "INVENTORY",
                key + "measure": "KG" if p.weighted else "PCS",
                key + "price": rubles(p.price),
                key + "quantity": qty_text(p.qty_milli, weighted=p.weighted),
                key + "modifiers": [],
            }
        )
    return {"operation": "loyalty-request", "loyalty": dict(loyalty), "data": data}


def identity_lines(positions: tuple[MkPosition, ...]) -> list[CheckLine]:
    return [CheckLine(p, p.qty_milli, line_sum(p.price, p.qty_milli), 0) for p in positions]


def apply_impacts(positions: tuple[MkPosition, ...], answer: Any) -> tuple[list[CheckLine], str]:
    """The check lines after applying a ``succeeded`` answer, and the ``data`` blob; or AnswerError."""
    if not isinstance(answer, dict) or answer.get("result") != "succeeded":
        raise AnswerError(f"not succeeded: {str(answer)[:120]}")
    data = answer.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("impacts"), list):
        raise AnswerError("succeeded without an impacts list")
    by_id = {p.position_id: p for p in positions}
    problems: list[str] = []
    ids = data["impacts"]
    if len(set(map(str, ids))) != len(ids):
        problems.append("impact ids are not unique")
    qty: dict[str, int] = {}
    lines: list[CheckLine] = []
    for iid in ids:
        if not isinstance(iid, str) or not iid.strip() or len(iid) > 255:
            problems.append(f"impact id {iid!r} is blank, not a string or too long")
            continue
        pos = by_id.get(str(data.get(f"impact/{iid}/position_id")))
        if pos is None:
            problems.append(f"impact {iid} names an unknown position")
            continue
        try:
            price = kopecks(data.get(f"impact/{iid}/price"))
            q = milli(data.get(f"impact/{iid}/quantity"))
        except (ValueError, ArithmeticError):
            problems.append(f"impact {iid}: price or quantity is not a decimal string")
            continue
        if price < 0 or q <= 0:
            problems.append(f"impact {iid}: negative price or non-positive quantity")
        if not pos.weighted and q % 1000:
            problems.append(f"impact {iid}: piece goods split into a fraction")
        qty[pos.position_id] = qty.get(pos.position_id, 0) + q
        paid = line_sum(price, q)
        lines.append(CheckLine(pos, q, paid, line_sum(pos.price, q) - paid))
    for p in positions:
        if qty.get(p.position_id, 0) != p.qty_milli:
            problems.append(f"position {p.position_id}: impact quantities do not add up")
    blob, printable = data.get("data", ""), data.get("printable_data")
    if not isinstance(blob, str) or len(blob) > MAX_BLOB:
        problems.append("data is not a string of at most 32000")
    if printable is not None and (
        not isinstance(printable, str) or not printable.strip() or len(printable) > MAX_BLOB
    ):
        problems.append("printable_data blank or longer than 32000")
    problems += receipt_problems(
        [(ln.position.position_id, ln.amount) for ln in lines], sum(ln.amount for ln in lines)
    )
    if problems:
        raise AnswerError("; ".join(problems))
    return lines, blob if isinstance(blob, str) else ""


def check_json(
    check_id: str,
    doc_type: str,
    lines: list[CheckLine],
    *,
    number: int,
    shift: int,
    point: str,
    user: str,
    date: str,
    payment: str,
) -> str:
    """The Gson ``Check`` (camelCase, numbers) as the ``check`` extra carries it: a JSON string."""
    total = sum(ln.amount for ln in lines)
    positions = [
        {
            "inventCode": ln.position.invent_code,
            "name": ln.position.name,
            "barcode": ln.position.barcode,
            "price": _num(ln.position.price),
            "quantity": _qty(ln),
            "amount": _num(ln.amount),
            "discountAmount": _num(ln.discount),
            "vatTag": "TAG_1105",
            "measure": "KG" if ln.position.weighted else "PCS",
            "inventType": "INVENTORY",
            "paymentMethod": "FULL_PAYMENT",
        }
        for ln in lines
    ]
    check = {
        "id": check_id,
        "docType": doc_type,
        "dateTime": date,
        "number": number,
        "inventPositions": positions,
        "moneyPositions": [{"paymentType": payment, "sum": _num(total)}],
        "employee": "Кассир",
        "employeeId": user,
        "retailPointId": point,
        "taxMode": "COMMON",
        "fiscalInfo": {
            "shiftNumber": shift,
            "checkNumber": number,
            "fnDocNumber": 4000 + number,
            "fnDocMark": str(1_000_000_000 + number * 7919),
            "date": date,
        },
    }
    return dumps(check).decode()  # Gson writes numbers: Num values come out unquoted


def _num(kop: int) -> Num:
    return Num(rubles(kop))


def _qty(ln: CheckLine) -> Num:
    return Num(qty_text(ln.qty_milli, weighted=ln.position.weighted))


def event_body(
    action: str, check_id: str, check: str | None, total: int, loyalty: dict[str, str]
) -> dict[str, Any]:
    extras: dict[str, Any] = {"check_id": check_id, "linked_id": None, "check_sum": rubles(total)}
    if check is not None:
        extras["check"] = check
    return {"action": action, "extras": extras, "loyalty": dict(loyalty)}


def check_key(check_id: str) -> str:
    """The gateway's dedup key of a closed check (drivers/modulkassa/README.md)."""
    return f"modulkassa:check:{check_id}"
