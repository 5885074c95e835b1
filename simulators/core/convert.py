"""Proto <-> rule-engine translation, input validation and canonical content hashes.

Invariants:
- :func:`validate_draft` refuses (INVALID_RECEIPT, metadata ``field`` = proto path such as
  ``draft.lines[2].amount``) everything the core cannot store, before anything is written;
- :func:`content_hash` is the SHA-256 of a canonical JSON of the business content of a
  request; transport metadata (hold id, ``expected``, ``offline``, channel, OTP) is left
  out, so a resend of the same receipt hashes the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.types import Calculation, LineIn, RuleViolation

MAX_AMOUNT = 10**13
MAX_QTY_MILLI = 10**9
MAX_LINES = 1000


def ts_to_dt(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def dt_to_ts(dt: datetime | None) -> Timestamp:
    ts = Timestamp()
    if dt is not None:
        ts.FromDatetime(dt.astimezone(UTC))
    return ts


def when(ts: Timestamp, has: bool, now: datetime) -> datetime:
    """The request's time when given, else the core's clock."""
    return ts_to_dt(ts) if has and (ts.seconds or ts.nanos) else now


def bad(field: str, message: str) -> RuleViolation:
    return RuleViolation("INVALID_RECEIPT", message, field=field)


def validate_draft(draft: pb.ReceiptDraft, prefix: str = "draft") -> None:
    if not draft.lines:
        raise bad(f"{prefix}.lines", "a receipt needs at least one line")
    if len(draft.lines) > MAX_LINES:
        raise bad(f"{prefix}.lines", f"at most {MAX_LINES} lines")
    seen: set[str] = set()
    for i, line in enumerate(draft.lines):
        path = f"{prefix}.lines[{i}]"
        if not line.line_id:
            raise bad(f"{path}.line_id", "line_id is required")
        if line.line_id in seen:
            raise bad(f"{path}.line_id", f"duplicate line_id {line.line_id!r}")
        seen.add(line.line_id)
        if line.qty_milli <= 0 or line.qty_milli > MAX_QTY_MILLI:
            raise bad(f"{path}.qty_milli", "quantity must be > 0 (thousandths)")
        if line.amount < 0 or line.amount > MAX_AMOUNT:
            raise bad(f"{path}.amount", "amount must be >= 0 minor units")
        if line.price < 0 or line.price > MAX_AMOUNT:
            raise bad(f"{path}.price", "price must be >= 0 minor units")
        if line.HasField("min_unit_price") and not 0 <= line.min_unit_price <= MAX_AMOUNT:
            raise bad(f"{path}.min_unit_price", "min_unit_price must be >= 0")
        if line.point_price < 0:
            raise bad(f"{path}.point_price", "point_price must be >= 0")
    if draft.redeem_points < 0:
        raise bad(f"{prefix}.redeem_points", "redeem_points must be >= 0")
    if draft.total < 0:
        raise bad(f"{prefix}.total", "total must be >= 0")
    if draft.total > 0 and draft.total != sum(line.amount for line in draft.lines):
        raise bad(f"{prefix}.total", "total differs from the sum of line amounts")


def lines_in(draft: pb.ReceiptDraft) -> list[LineIn]:
    out = []
    for ln in draft.lines:  # positional: LineIn(line_id, amount, qty_milli, sku, category, min_unit_price,
        has = ln.HasField  # discountable, accruable, point_price); this runs on every Calculate
        out.append(
            LineIn(
                ln.line_id,
                ln.amount,
                ln.qty_milli,
                ln.sku,
                ln.category,
                ln.min_unit_price if has("min_unit_price") else None,
                ln.discountable if has("discountable") else True,
                ln.accruable if has("accruable") else True,
                ln.point_price,
            )
        )
    return out


def prefix_field(exc: RuleViolation, prefix: str = "draft") -> RuleViolation:
    f = exc.metadata.get("field")
    if f and not f.startswith(prefix + "."):
        exc.metadata["field"] = f"{prefix}.{f}"
    return exc


def _ref(ref: pb.CustomerRef) -> dict[str, str]:
    kind = ref.WhichOneof("id") or ""
    return {kind: str(getattr(ref, kind))} if kind else {}


def _staff(s: pb.Staff) -> dict[str, str]:
    return {"store": s.store_id, "terminal": s.terminal_id, "cashier": s.cashier_id}


def draft_content(draft: pb.ReceiptDraft) -> dict[str, Any]:
    return {
        "customer": _ref(draft.customer),
        "lines": [
            {
                "id": ln.line_id,
                "sku": ln.sku,
                "cat": ln.category,
                "qty": ln.qty_milli,
                "price": ln.price,
                "amount": ln.amount,
                "min": ln.min_unit_price if ln.HasField("min_unit_price") else None,
                "disc": ln.discountable if ln.HasField("discountable") else True,
                "accr": ln.accruable if ln.HasField("accruable") else True,
                "pp": ln.point_price,
            }
            for ln in draft.lines
        ],
        "redeem": draft.redeem_points,
        "redeem_max": draft.redeem_max,
        "at": [draft.occurred_at.seconds, draft.occurred_at.nanos],
        "staff": _staff(draft.staff),
        "register": draft.register_id,
        "number": draft.receipt_number,
        "total": draft.total,
    }


def refund_content(req: pb.RefundRequest) -> dict[str, Any]:
    return {
        "sale": {
            req.sale.WhichOneof("ref") or "": getattr(req.sale, req.sale.WhichOneof("ref") or "operation_id")
        },
        "full": req.full,
        "lines": sorted((ln.line_id, ln.qty_milli) for ln in req.lines),
        "amount": req.amount,
    }


def cancel_content(req: pb.CancelRequest) -> dict[str, Any]:
    return {
        "sale": {
            req.sale.WhichOneof("ref") or "": getattr(req.sale, req.sale.WhichOneof("ref") or "operation_id")
        }
    }


def content_hash(content: Any) -> str:
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def calc_to_pb(c: Calculation, *, balance_after: int, display_name: str = "") -> pb.CalculateResponse:
    return pb.CalculateResponse(
        customer_id=c.customer_id,
        lines=[
            pb.LineResult(
                line_id=lo.line_id,
                discount=lo.discount,
                paid=lo.paid,
                accrues=lo.accrues,
                points_paid=lo.points_paid,
            )
            for lo in c.lines
        ],
        gross=c.gross,
        redeemable_base=c.redeemable_base,
        max_points=c.max_points,
        limited_by=c.limited_by,
        redeemed_certificate=c.redeemed_certificate,
        redeemed_ordinary=c.redeemed_ordinary,
        payable=c.payable,
        points_to_accrue=c.points_to_accrue,
        tier=c.tier,
        balance_before=c.balance_before,
        balance_after=balance_after,
        applied_rules=[
            pb.AppliedRule(rule_id=r.rule_id, amount=r.amount, reason=r.reason) for r in c.applied_rules
        ],
        instant_discount=c.instant_discount,
        display_name=display_name,
        goods_points=c.goods_points,
    )


def paid_total(c: Calculation) -> int:
    return sum(lo.paid for lo in c.lines)


def joined(items: Iterable[str]) -> str:
    return ",".join(items)
