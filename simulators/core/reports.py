"""GetReport: the analytics figures of loyalty-rules.md §4 for a window [from, to).

Reads only; computed in Python from the window's operations (a simulator's volumes).
Sales count when committed, not cancelled and of an identified customer, by ``occurred_at``;
a refund counts in its own period. Ratios are integers: ``*_bp`` basis points, ``*_milli``
thousandths. Points issued = accrual + referral + invite bonus + welcome + grants minus
clawbacks, by source; cancelled sales contribute nothing.

Churn per month (``months``): for each calendar month M of the program time zone that starts
within [from, to), no earlier than the month of the first purchase and no later than now,
``churned`` counts customers whose last purchase before the end of M plus 90 days falls in M
(and has passed), ``base`` those who bought in the 90 days before M; a churned customer is
always in the base. Days are counted on the local wall clock.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import defaultdict
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from simulators.core import convert
from simulators.core.context import Core
from simulators.core.tables import Customer, GrantMark, LotRow, Movement, Operation

ISSUE_KINDS = (
    "accrual",
    "referral",
    "invite_bonus",
    "welcome",
    "birthday",
    "winback",
    "review",
    "partner",
    "manual",
    "special_date",
)
CHURN_DAYS = 90


def _bp(part: int, whole: int) -> int:
    return part * 10_000 // whole if whole else 0


def report(core: Core, req: pb.GetReportRequest) -> pb.GetReportResponse:
    now = core.now()
    start = (
        convert.ts_to_dt(req.__getattribute__("from"))
        if req.HasField("from")
        else datetime.min.replace(tzinfo=now.tzinfo)
    )
    end = convert.ts_to_dt(req.to) if req.HasField("to") else now
    ref_bp = req.reference_discount_bp or core.program.reference_discount_bp or 500

    def work(s: Session) -> pb.GetReportResponse:
        return _build(s, core, start, end, ref_bp)

    return core.db.transaction(work, write=False)


def _build(s: Session, core: Core, start: datetime, end: datetime, ref_bp: int) -> pb.GetReportResponse:
    program = core.program
    in_window = (Operation.occurred_at >= start, Operation.occurred_at < end)
    custs = {c.id: c for c in s.scalars(select(Customer))}
    sales = [
        o
        for o in s.scalars(select(Operation).where(Operation.kind == "sale", *in_window))
        if not o.cancelled and o.customer_id is not None
    ]
    refunds = list(s.scalars(select(Operation).where(Operation.kind == "refund", *in_window)))
    cancelled = set(
        s.scalars(select(Operation.id).where(Operation.kind == "sale", Operation.cancelled.is_(True)))
    )
    cancel_ops = set(s.scalars(select(Operation.id).where(Operation.kind == "cancel")))
    r = pb.GetReportResponse()
    r.members = sum(1 for c in custs.values() if c.created_at < end)
    per_cust: dict[int, list[Operation]] = defaultdict(list)
    for o in sales:
        per_cust[o.customer_id or 0].append(o)
    r.buyers = len(per_cust)
    r.receipts = len(sales)
    sales_gross = sum(o.gross for o in sales)
    r.refunds = len(refunds)
    r.money_refunded = sum(o.paid for o in refunds)
    r.gross = sales_gross - sum(o.gross for o in refunds)
    r.paid = sum(o.paid for o in sales) - r.money_refunded
    r.discounts = sum(o.discount for o in sales) - sum(o.discount for o in refunds)
    r.actual_discount_bp = _bp(r.discounts, r.gross)
    r.saving_vs_direct_discount = r.gross * ref_bp // 10_000 - r.discounts
    buyers = [custs[cid] for cid in per_cust if cid in custs]
    r.one_time_customers = sum(1 for c in buyers if c.purchase_count == 1)
    r.regular_customers = sum(1 for c in buyers if c.purchase_count >= 3)
    span = gaps = 0
    for c in buyers:
        if c.purchase_count >= 2 and c.first_purchase_at and c.last_purchase_at:
            span += int((c.last_purchase_at - c.first_purchase_at).total_seconds() * 1000) // 86_400
            gaps += c.purchase_count - 1
    r.purchase_frequency_days_milli = span // gaps if gaps else 0
    r.purchases_per_customer_milli = r.receipts * 1000 // r.buyers if r.buyers else 0
    repeat = [ops for ops in per_cust.values() if len(ops) >= 2]
    r.purchases_per_repeat_customer_milli = sum(map(len, repeat)) * 1000 // len(repeat) if repeat else 0
    r.average_receipt = sales_gross // r.receipts if r.receipts else 0
    r.revenue_per_customer = r.paid // r.buyers if r.buyers else 0
    refunds_by_cust: dict[int, int] = defaultdict(int)
    for o in refunds:
        refunds_by_cust[o.customer_id or 0] += o.paid

    def paid_of(pred: Any) -> int:
        total = 0
        for cid, c in custs.items():
            if pred(c):
                total += sum(o.paid for o in per_cust.get(cid, [])) - refunds_by_cust.get(cid, 0)
        return total

    r.referral_revenue = paid_of(lambda c: c.inviter_id is not None)
    r.platform_revenue = paid_of(lambda c: c.channel == "app")
    r.certificates_issued = len(
        list(
            s.scalars(
                select(LotRow.id).where(
                    LotRow.certificate.is_(True), LotRow.created_at >= start, LotRow.created_at < end
                )
            )
        )
    )
    states = {o.id: json.loads(o.state) for o in sales}
    r.certificate_receipts_paid = sum(o.paid for o in sales if states[o.id].get("cert_used"))
    wb = [o for o in sales if states[o.id].get("winback")]
    r.winback_customers = len({o.customer_id for o in wb})
    r.winback_paid = sum(o.paid for o in wb)
    r.reviews = len(
        list(
            s.scalars(
                select(GrantMark.key).where(
                    GrantMark.kind == "review", GrantMark.at >= start, GrantMark.at < end
                )
            )
        )
    )
    moves = [
        m
        for m in s.scalars(select(Movement).where(Movement.at >= start, Movement.at < end))
        if m.operation_id not in cancelled and m.operation_id not in cancel_ops
    ]
    issued: dict[str, int] = defaultdict(int)
    redeemed = 0
    for m in moves:
        if m.kind in ISSUE_KINDS:
            issued[m.kind] += m.points
        elif m.kind.startswith("clawback_"):
            issued[m.kind.removeprefix("clawback_")] += m.points
        elif m.kind == "redeem":
            redeemed -= m.points
        elif m.kind == "restore":
            redeemed -= m.points
    r.points_issued_by_source.update(issued)
    r.points_redeemed = redeemed
    r.cashiers.extend(_cashiers(custs, sales, refunds, moves, start, end))
    r.channels.extend(_channels(custs, per_cust, start, end))
    if program.included_receipts_per_month and program.extra_receipt_price:
        months: dict[tuple[int, int], int] = defaultdict(int)
        for o in sales:
            local = o.occurred_at.astimezone(program.tz)
            months[(local.year, local.month)] += 1
        r.usage_overage = sum(max(0, n - program.included_receipts_per_month) for n in months.values()) * (
            program.extra_receipt_price
        )
    r.months.extend(_churn(s, program.tz, start, end, core.now()))
    return r


def _next_month(m: datetime) -> datetime:
    return m.replace(year=m.year + m.month // 12, month=m.month % 12 + 1)


def _churn(s: Session, tz: tzinfo, start: datetime, end: datetime, now: datetime) -> list[pb.MonthFigures]:
    times: dict[int, list[datetime]] = defaultdict(list)
    q = select(Operation.customer_id, Operation.occurred_at).where(
        Operation.kind == "sale", Operation.cancelled.is_(False), Operation.customer_id.is_not(None)
    )
    for cid, at in s.execute(q):
        times[cid or 0].append(at.astimezone(tz))
    if not times:
        return []
    for ts in times.values():
        ts.sort()
    first = min(ts[0] for ts in times.values())
    month = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0, fold=0)
    while month < start:
        month = _next_month(month)
    lapse = timedelta(days=CHURN_DAYS)
    out = []
    while month < end and month <= now:
        after = _next_month(month)
        cutoff = min(after, now)
        churned = base = 0
        for ts in times.values():
            before = bisect_left(ts, month)
            if before and ts[before - 1] >= month - lapse:
                base += 1
            last = bisect_left(ts, after)
            if last and month <= ts[last - 1] + lapse < cutoff:
                churned += 1
        label = f"{month.year:04d}-{month.month:02d}"
        out.append(pb.MonthFigures(month=label, churned=churned, base=base, churn_bp=_bp(churned, base)))
        month = after
    return out


def _cashiers(
    custs: dict[int, Customer],
    sales: list[Operation],
    refunds: list[Operation],
    moves: list[Movement],
    start: datetime,
    end: datetime,
) -> list[pb.CashierFigures]:
    figs: dict[str, pb.CashierFigures] = {}
    gross: dict[str, int] = defaultdict(int)
    disc: dict[str, int] = defaultdict(int)

    def fig(cid: str, name: str = "") -> pb.CashierFigures:
        f = figs.setdefault(cid, pb.CashierFigures(cashier_id=cid))
        if name and not f.cashier_name:
            f.cashier_name = name
        return f

    for c in custs.values():
        if c.cashier_id and start <= c.created_at < end:
            fig(c.cashier_id, c.cashier_name).registrations += 1
    for o in sales:
        f = fig(o.cashier_id, o.cashier_name)
        f.receipts += 1
        f.receipts_with_accrual += o.accrued > 0
        f.receipts_with_redemption += o.redeemed > 0
        gross[o.cashier_id] += o.gross
        disc[o.cashier_id] += o.discount
    for o in refunds:
        fig(o.cashier_id, o.cashier_name).refunds += 1
    for m in moves:
        if (m.kind in ISSUE_KINDS and m.kind != "welcome") or m.kind.startswith("clawback_"):
            fig(m.cashier_id).points_issued += m.points
        elif m.kind in ("redeem", "restore"):
            fig(m.cashier_id).points_redeemed -= m.points
    for cid, f in figs.items():
        f.actual_discount_bp = _bp(disc[cid], gross[cid])
    return [figs[k] for k in sorted(figs) if k]


def _channels(
    custs: dict[int, Customer], per_cust: dict[int, list[Operation]], start: datetime, end: datetime
) -> list[pb.ChannelFigures]:
    figs: dict[str, pb.ChannelFigures] = {}
    for cid, c in custs.items():
        if not start <= c.created_at < end:
            continue
        f = figs.setdefault(c.channel or "cashier", pb.ChannelFigures(channel=c.channel or "cashier"))
        f.new_members += 1
        ops = per_cust.get(cid, [])
        if ops:
            f.buyers += 1
            f.paid += sum(o.paid for o in ops)
    return [figs[k] for k in sorted(figs)]
