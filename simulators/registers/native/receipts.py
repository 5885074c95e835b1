"""A till's receipt, the native-API bodies built from it, and the check of a calc answer (pure).

Owns the request bodies the simulated till sends (``calculate``, ``sales``, ``refunds``,
``cancels``, ``identify``) and :func:`apply_answer`, which accepts a calculate answer only if
it is consistent with the receipt: every line answered exactly once, no negative discount or
paid sum, discount ≤ amount, paid = amount − discount, nothing discounted on a
non-discountable line, no line under its minimum price, and Σ paid = payable.

Invariants: all money in bodies is integer kopecks, quantities integer thousandths; a
receipt's identity (register, shift, number, fiscal sign, document id) is fixed when it is
rung up, so every resend of the same sale carries the same identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from simulators.registers.native.catalog import SimLine


class AnswerError(Exception):
    """A calculate answer the till cannot apply; the message lists every problem found."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What the till applied from a consistent calculate answer (or nothing, selling at full price)."""

    redeemed_points: int = 0
    payable: int = 0
    points_to_accrue: int = 0
    offline: bool = False
    hold_id: str = ""
    discounts: dict[str, int] = field(default_factory=dict)
    calc_token: str = ""  # echoed with the sale, unchanged (opaque to the till)


@dataclass(frozen=True, slots=True)
class TillReceipt:
    """One receipt as the till rings it up."""

    register_id: str
    shift: str
    receipt_number: str
    lines: tuple[SimLine, ...]
    occurred_at: str  # RFC 3339 with offset
    cashier_id: str = "c1"
    cashier_name: str = "Кассир"
    customer: dict[str, str] | None = None
    redeem_max: bool = False
    document_id: str = ""

    @property
    def identity(self) -> str:
        """The till's own name for the receipt (stable across resends)."""
        return f"{self.register_id}/{self.shift}/{self.receipt_number}"

    @property
    def fiscal_sign(self) -> str:
        digest = hashlib.sha256(self.identity.encode()).hexdigest()
        return str(int(digest[:12], 16) % 10**10).zfill(10)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    def _base(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "register_id": self.register_id,
            "receipt_number": self.receipt_number,
            "shift": self.shift,
            "occurred_at": self.occurred_at,
            "cashier": {"id": self.cashier_id, "name": self.cashier_name},
            "lines": [line.to_json() for line in self.lines],
        }
        if self.customer:
            body["customer"] = dict(self.customer)
        return body

    def calc_body(self, *, redeem: bool = True) -> dict[str, Any]:
        body = self._base()
        if redeem and self.redeem_max and self.customer:
            body["redeem_max"] = True
        return body

    def sale_body(self, applied: Applied, *, payment_kind: str = "card") -> dict[str, Any]:
        body = self._base()
        body["fiscal_sign"] = self.fiscal_sign
        if self.document_id:
            body["document_id"] = self.document_id
        body["redeemed_points"] = applied.redeemed_points
        if applied.hold_id:
            body["hold_id"] = applied.hold_id
        if applied.calc_token:
            body["calc_token"] = applied.calc_token
        body["payments"] = [{"kind": payment_kind, "amount": applied.payable}]
        return body

    def sale_ref(self) -> dict[str, str]:
        """How a refund or cancel names this sale: the document id, else number + shift + sign."""
        if self.document_id:
            return {"document_id": self.document_id}
        return {"receipt_number": self.receipt_number, "shift": self.shift, "fiscal_sign": self.fiscal_sign}

    def refund_body(self, refund_id: str, lines: dict[str, int] | None, occurred_at: str) -> dict[str, Any]:
        """A refund of ``lines`` ({line_id: qty_milli}), or of the whole sale when None."""
        body: dict[str, Any] = {"register_id": self.register_id, "refund_id": refund_id,
                                "sale": self.sale_ref(), "occurred_at": occurred_at}
        if lines is None:
            body["full"] = True
        else:
            body["lines"] = [{"line_id": k, "qty_milli": v} for k, v in lines.items()]
        return body

    def cancel_body(self, cancel_id: str) -> dict[str, Any]:
        return {"register_id": self.register_id, "cancel_id": cancel_id, "sale": self.sale_ref()}

    def full_price(self) -> Applied:
        """Selling without loyalty (no answer, or an answer the till refused)."""
        return Applied(payable=self.total)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def apply_answer(receipt: TillReceipt, answer: Any) -> Applied:
    """Check a calculate answer against ``receipt``; return what to apply or raise AnswerError."""
    if not isinstance(answer, dict) or not isinstance(answer.get("lines"), list):
        raise AnswerError("answer has no lines list")
    problems: list[str] = []
    for name in ("redeemed_points", "points_to_accrue", "payable"):
        if not _int(answer.get(name)) or answer[name] < 0:
            problems.append(f"{name} is {answer.get(name)!r}, expected a non-negative integer")
    if not isinstance(answer.get("offline"), bool):
        problems.append(f"offline is {answer.get('offline')!r}, expected a boolean")
    by_id = {line.line_id: line for line in receipt.lines}
    seen: dict[str, int] = {}
    paid_sum = 0
    for i, item in enumerate(answer["lines"]):
        if not isinstance(item, dict) or not all(_int(item.get(k)) for k in ("discount", "paid")):
            problems.append(f"lines[{i}] needs integer discount and paid")
            continue
        line_id, discount, paid = str(item.get("line_id")), item["discount"], item["paid"]
        line = by_id.get(line_id)
        if line is None:
            problems.append(f"lines[{i}]: unknown line_id {line_id!r}")
            continue
        if line_id in seen:
            problems.append(f"line {line_id} answered twice")
        seen[line_id] = discount
        paid_sum += paid
        if discount < 0 or paid < 0:
            problems.append(f"line {line_id}: negative discount {discount} or paid {paid}")
        if discount > line.amount:
            problems.append(f"line {line_id}: discount {discount} > amount {line.amount}")
        if paid != line.amount - discount:
            problems.append(f"line {line_id}: paid {paid} != amount {line.amount} - discount {discount}")
        if not line.product.discountable and discount:
            problems.append(f"line {line_id}: discount {discount} on a non-discountable line")
        floor = line.product.min_unit_price
        if floor is not None and paid < -(-floor * line.qty_milli // 1000) and discount:
            problems.append(f"line {line_id}: paid {paid} under the minimum price")
    missing = sorted(set(by_id) - set(seen))
    if missing:
        problems.append(f"lines not answered: {', '.join(missing)}")
    if _int(answer.get("payable")) and answer["payable"] != paid_sum:
        problems.append(f"payable {answer['payable']} != sum of paid {paid_sum}")
    if problems:
        raise AnswerError("; ".join(problems))
    hold, token = answer.get("hold_id"), answer.get("calc_token")
    return Applied(
        redeemed_points=answer["redeemed_points"], payable=answer["payable"],
        points_to_accrue=answer["points_to_accrue"], offline=answer["offline"],
        hold_id=hold if isinstance(hold, str) else "", discounts=seen,
        calc_token=token if isinstance(token, str) else "",
    )
