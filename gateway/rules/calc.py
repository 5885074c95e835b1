"""Calculate (loyalty-rules.md §2.1, §2.4): account state + receipt lines -> Calculation.

Pure: no I/O, no clock; ``at`` is the operation time (timezone-aware).

Invariants of every Calculation:
- Σ line discounts from points = redeemed·pv exactly, and no line's discount exceeds its
  capacity (amount − floor), so no line falls below its floor or zero;
- redeemed ≤ max_points ≤ spendable points (open lots, less other tills' holds);
- accrual is floored once per receipt: ⌊⌊B_a·rate/10 000⌋/pv⌋; redeemed points earn nothing.

Decisions where the spec is silent (documented for the core and the offline policy):
- goods for points: a line with ``point_price`` > 0 is paid wholly in points (``point_price``
  is the points for the whole line), outside the cap, from ordinary lots in spending order,
  and earns nothing; it needs the same identification as a redemption; a program without
  ``goods_for_points`` refuses such a line (INVALID_RECEIPT);
- ``held_by_others`` is taken from the lots in spending order (as the other till's commit
  will debit them); what is left is spendable here;
- a negative balance (``allow_negative_balance``) blocks redemption: max_points 0, "balance";
- ``limited_by``: "identification" (weak or unknown customer), "balance" (nothing spendable,
  or the points themselves bind), "none" (no discountable amount on the receipt), else the
  binding limit with ties named in the order tier_cap/certificate_cap, combined_cap,
  line_floor;
- ``policy = "discount"``: known customers get ⌊B_r·rate⌋ (limited to the capacity left after
  any point redemption) spread like D; nothing accrues; unknown customers get no discount;
- ``redeem_max`` redeems exactly ``max_points`` (``redeem_points`` is then ignored);
- a tier name the program does not know is re-derived from the counters (``tier_for``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.rules import _reasons
from gateway.rules.money import pct_of, points_of_pct
from gateway.rules.program import Program, Tier
from gateway.rules.tiers import tier_for
from gateway.rules.types import (
    AccountState,
    AppliedRule,
    Calculation,
    Debit,
    LineIn,
    LineOut,
    Lot,
    RuleViolation,
)

_FAR = datetime.max.replace(tzinfo=UTC)


def _aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise RuleViolation(
            "INVALID_RECEIPT", f"time must be timezone-aware: {at.isoformat()}", field="occurred_at"
        )


def open_lots(lots: Sequence[Lot], at: datetime) -> tuple[Lot, ...]:
    """The lots spendable at ``at``: points left, available, not expired (expires_at > at)."""
    _aware(at)
    return tuple(
        lot
        for lot in lots
        if lot.points > 0 and lot.available_from <= at and (lot.expires_at is None or lot.expires_at > at)
    )


def available_by(lots: Sequence[Lot], at: datetime, processed_at: datetime) -> tuple[Lot, ...]:
    """``lots`` with those that became available by ``processed_at`` shown as available at ``at``.

    A receipt is judged at its own time ``at``, but tills stamp receipts to the second and their
    clocks differ a little: a receipt may carry a time just before the accrual of the customer's
    previous receipt (or a welcome lot) that the core already holds when it processes it. Points
    the core holds at processing time are spendable; expiry is still judged at ``at`` by
    :func:`open_lots`.
    """
    _aware(at)
    _aware(processed_at)
    return tuple(
        dataclasses.replace(lot, available_from=at) if at < lot.available_from <= processed_at else lot
        for lot in lots
    )


def spending_order(lots: Sequence[Lot]) -> list[Lot]:
    """Certificates first, then the soonest expiry, never-expiring last; ties to the oldest."""
    return sorted(
        lots,
        key=lambda lot: (
            not lot.certificate,
            lot.expires_at is None,
            lot.expires_at or _FAR,
            lot.created,
            lot.lot_id,
        ),
    )


def allocate(total: int, capacities: Sequence[int]) -> list[int]:
    """Spread ``total`` over ``capacities`` by largest remainder (§2.4).

    Each gets ⌊total·c_i/Σc⌋; the leftover units go one each to the largest fractional parts,
    ties to the larger c_i, then the earlier index. Σ result = total and result_i ≤ c_i.
    """
    if total < 0 or any(c < 0 for c in capacities):
        raise ValueError("total and capacities must not be negative")
    cap_sum = sum(capacities)
    if total > cap_sum:
        raise ValueError(f"cannot spread {total} over capacities summing to {cap_sum}")
    if total == 0:
        return [0] * len(capacities)
    shares = [total * c // cap_sum for c in capacities]
    leftover = total - sum(shares)
    order = sorted(
        range(len(capacities)), key=lambda i: (-(total * capacities[i] % cap_sum), -capacities[i], i)
    )
    for i in order[:leftover]:
        shares[i] += 1
    return shares


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def line_floor(line: LineIn, program: Program) -> int:
    """max(⌈min_unit_price·qty⌉, ⌈amount·line_floor_pct⌉, 0) in minor units."""
    by_price = 0 if line.min_unit_price is None else _ceil_div(line.min_unit_price * line.qty_milli, 1000)
    by_pct = _ceil_div(line.amount * program.line_floor_bp, 10_000)
    return max(by_price, by_pct, 0)


def _listed(line: LineIn, skus: frozenset[str], categories: frozenset[str]) -> bool:
    return (bool(line.sku) and line.sku in skus) or (bool(line.category) and line.category in categories)


def effective_flags(line: LineIn, program: Program) -> tuple[bool, bool]:
    """(discountable, accruable): the POS flag and the program's SKU/category lists, either is
    enough to exclude. Goods-for-points lines are neither (paid in points, earn nothing)."""
    if line.point_price > 0:
        return False, False
    discountable = line.discountable and not _listed(
        line, program.no_redeem_skus, program.no_redeem_categories
    )
    accruable = line.accruable and not _listed(line, program.no_accrue_skus, program.no_accrue_categories)
    return discountable, accruable


def _validate(program: Program, lines: Sequence[LineIn], redeem_points: int) -> None:
    def bad(message: str, field: str) -> RuleViolation:
        return RuleViolation("INVALID_RECEIPT", message, field=field)

    if redeem_points < 0:
        raise bad(f"redeem_points must not be negative, got {redeem_points}", "redeem_points")
    if not lines:
        raise bad("the receipt has no lines", "lines")
    seen: set[str] = set()
    for i, line in enumerate(lines):
        where = f"lines[{i}]"
        if not line.line_id or line.line_id in seen:
            raise bad(f"line_id {line.line_id!r} is empty or repeated", f"{where}.line_id")
        seen.add(line.line_id)
        if line.qty_milli <= 0:
            raise bad(f"quantity must be positive, got {line.qty_milli}", f"{where}.qty_milli")
        if line.amount < 0:
            raise bad(f"amount must not be negative, got {line.amount}", f"{where}.amount")
        if line.point_price < 0 or (line.point_price > 0 and not program.goods_for_points):
            raise bad(
                f"point_price {line.point_price} not allowed by program {program.id}", f"{where}.point_price"
            )
        if line.min_unit_price is not None and line.min_unit_price < 0:
            raise bad("min_unit_price must not be negative", f"{where}.min_unit_price")
        if line_floor(line, program) > line.amount:
            raise bad(
                f"line floor {line_floor(line, program)} exceeds amount {line.amount}",
                f"{where}.min_unit_price",
            )


def _take(lots: Sequence[Lot], points: int) -> tuple[list[Debit], list[Lot]]:
    """Take ``points`` from ``lots`` in the given order -> (debits, lots left with points)."""
    debits: list[Debit] = []
    left: list[Lot] = []
    for lot in lots:
        if points == 0:  # nothing more to take: the rest stays as it is (no copies)
            if lot.points > 0:
                left.append(lot)
            continue
        n = min(points, lot.points)
        points -= n
        if n:
            debits.append(Debit(lot.lot_id, n))
        if lot.points > n:
            left.append(dataclasses.replace(lot, points=lot.points - n))
    return debits, left


def _tier(program: Program, account: AccountState | None) -> Tier:
    if account is None:
        return program.lowest_tier
    for tier in program.tiers:
        if tier.name == account.tier:
            return tier
    return tier_for(
        program,
        total_spent=account.total_spent,
        purchase_count=account.purchase_count,
        effective_invited=account.effective_invited,
        current=None,
    )


def calculate(
    program: Program,
    account: AccountState | None,
    lines: Sequence[LineIn],
    *,
    redeem_points: int = 0,
    redeem_max: bool = False,
    at: datetime,
    otp_ok: bool | None = None,
) -> Calculation:
    """§2.1 steps 1-6. ``account`` None = unknown customer (accrual shown, no redemption)."""
    _aware(at)
    _validate(program, lines, redeem_points)
    if account is not None and account.blocked:
        raise RuleViolation("CUSTOMER_BLOCKED", "the customer is blocked: sell without loyalty")
    tier = _tier(program, account)
    pv = program.pv

    # Step 2: flags, floors, capacities, B_r.
    flags = [effective_flags(line, program) for line in lines]
    caps = [
        line.amount - line_floor(line, program) if disc else 0
        for line, (disc, _) in zip(lines, flags, strict=True)
    ]
    base_r = sum(line.amount for line, (disc, _) in zip(lines, flags, strict=True) if disc)
    goods_points = sum(line.point_price for line in lines)

    # Step 1 and 3: spendable lots and limits.
    lots = open_lots(account.lots, at) if account is not None else ()
    balance_before = sum(lot.points for lot in lots) + (account.negative_balance if account else 0)
    spendable: list[Lot] = spending_order(lots)
    if account is not None:
        spendable = _take(spendable, account.held_by_others)[1]
        if account.negative_balance < 0:
            spendable = []
    certs = [lot for lot in spendable if lot.certificate]
    ordinary = [lot for lot in spendable if not lot.certificate]
    ordinary_before_goods = sum(lot.points for lot in ordinary)
    ord_pts = max(ordinary_before_goods - goods_points, 0)
    cert_pts = sum(lot.points for lot in certs)
    cc = max((lot.cap_bp for lot in certs), default=0)
    ord_cap, cert_cap = points_of_pct(base_r, tier.cap_bp, pv), points_of_pct(base_r, cc, pv)
    ord_max, cert_max = min(ord_pts, ord_cap), min(cert_pts, cert_cap)
    comb_max = points_of_pct(base_r, max(tier.cap_bp, cc), pv)
    floor_max = sum(caps) // pv
    strong = account is not None and account.method in program.redeem_with
    max_points = min(ord_max + cert_max, comb_max, floor_max) if strong else 0
    if not strong:
        limited_by = "identification"
    elif ord_pts + cert_pts == 0:
        limited_by = "balance"
    elif base_r == 0:
        limited_by = "none"
    elif max_points == ord_max + cert_max:
        limited_by = (
            "tier_cap" if ord_pts > ord_cap else "certificate_cap" if cert_pts > cert_cap else "balance"
        )
    else:
        limited_by = "combined_cap" if max_points == comb_max else "line_floor"

    # Step 4: check the request.
    want = max_points if redeem_max else redeem_points
    if want > 0 or goods_points > 0:
        if account is None or not strong:
            method = account.method if account else "unknown"
            raise RuleViolation(
                "REDEMPTION_NOT_PERMITTED", f"identification {method!r} may only accrue points"
            )
        if account.method == "phone_otp" and otp_ok is not True:
            code = "OTP_REQUIRED" if otp_ok is None else "OTP_INVALID"
            raise RuleViolation(code, "confirm the phone with the SMS code first")
        if goods_points > ordinary_before_goods:
            raise RuleViolation(
                "INSUFFICIENT_POINTS",
                f"goods cost {goods_points} points, {ordinary_before_goods} available",
                available=ordinary_before_goods,
            )
        if want > ord_pts + cert_pts:
            raise RuleViolation(
                "INSUFFICIENT_POINTS",
                f"{want} points asked, {ord_pts + cert_pts} available",
                available=ord_pts + cert_pts,
            )
        if want > max_points:
            raise RuleViolation(
                "REDEMPTION_CAP_EXCEEDED",
                f"{want} points asked, at most {max_points} allowed ({limited_by})",
                available=ord_pts + cert_pts,
                max_points=max_points,
                limited_by=limited_by,
            )

    # Step 5: certificates first, then ordinary; spread D; debits in spending order.
    cert_take = min(want, cert_max)
    ord_take = want - cert_take
    d = allocate(want * pv, caps)
    debits = _take(certs, cert_take)[0] + _take(ordinary, goods_points + ord_take)[0]

    instant = [0] * len(lines)
    if program.policy == "discount" and account is not None:
        room = [c - di for c, di in zip(caps, d, strict=True)]
        instant = allocate(min(pct_of(base_r, tier.rate_bp), sum(room)), room)

    # Step 6: paid, B_a, accrual.
    out: list[LineOut] = []
    for line, (_, accr), di, ii in zip(lines, flags, d, instant, strict=True):
        discount = line.amount if line.point_price > 0 else di + ii
        out.append(LineOut(line.line_id, discount, line.amount - discount, accr, line.point_price))
    base_a = sum(lo.paid for lo in out if lo.accrues)
    accrue = points_of_pct(base_a, tier.rate_bp, pv) if program.policy == "cashback" else 0
    gross = sum(line.amount for line in lines)

    rules: list[AppliedRule] = []
    for line, (disc, accr) in zip(lines, flags, strict=True):
        if line.point_price > 0:
            rules.append(_reasons.goods(line.line_id, line.point_price))
            continue
        if line.discountable and not disc:
            rules.append(_reasons.excluded(line.line_id, line.amount, redeem=True))
        if line.accruable and not accr:
            rules.append(_reasons.excluded(line.line_id, line.amount, redeem=False))
    rules.append(
        _reasons.limit(
            limited_by,
            max_points,
            tier=tier,
            base=base_r,
            cert_cap_bp=cc,
            method=account.method if account else None,
        )
    )
    if cert_take:
        rules.append(_reasons.redeemed(True, cert_take, pv))
    if ord_take:
        rules.append(_reasons.redeemed(False, ord_take, pv))
    if program.policy == "discount":
        rules.append(_reasons.instant(tier, base_r, sum(instant)))
    else:
        rules.append(_reasons.accrual(tier, base_a, accrue))

    return Calculation(
        customer_id=account.customer_id if account else "",
        tier=tier.name,
        lines=tuple(out),
        gross=gross,
        redeemable_base=base_r,
        max_points=max_points,
        limited_by=limited_by,
        redeemed_certificate=cert_take,
        redeemed_ordinary=ord_take,
        payable=gross - sum(lo.discount for lo in out),
        accrual_base=base_a,
        points_to_accrue=accrue,
        balance_before=balance_before,
        instant_discount=sum(instant),
        goods_points=goods_points,
        debits=tuple(debits),
        applied_rules=tuple(rules),
    )
