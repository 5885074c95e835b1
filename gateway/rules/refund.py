"""Refund math (loyalty-rules.md §2.3): cumulative, so the last refund closes the sale exactly.

For a sold line with quantity Q, amount a, point discount d (and instant discount i), after
r units returned in total: G(r) = ⌊a·r/Q⌋, Dd(r) = ⌊d·r/Q⌋, Di(r) = ⌊i·r/Q⌋. Every figure of
one refund is "cumulative after it minus cumulative before it":
- money refunded now = Σ(G − Dd − Di)(r) − Σ(G − Dd − Di)(r_prev);
- restored points now = ⌊ΣDd(r)/pv⌋ − ⌊ΣDd(r_prev)/pv⌋;
- b (clawback base) = Σ(G − Dd − Di) over accruable lines; each reward A is clawed back to
  ⌊A·b/B_a⌋ in total (:func:`clawback_now` gives the part due now).
Amount-only refunds (UDS ``partialAmount``) use the cumulative fraction M/Σpaid instead of r/Q;
the money refunded is then M itself. When everything is returned, G = a, Dd = d, b = B_a.
Because G and Dd are floored separately, one partial refund of a line paying less than one
minor unit per thousandth can give money_now = −1 (the next refund gives it back); totals
are always exact. Returning more than was sold raises RuleViolation("REFUND_EXCEEDS_SALE"); a bad line id or a
negative quantity raises RuleViolation("INVALID_RECEIPT").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.rules.types import RuleViolation


@dataclass(frozen=True, slots=True)
class SoldLine:
    """A committed line: ``discount`` is the point-paid discount d_i (minor units);
    ``instant`` the instant discount of a ``policy = "discount"`` program (restores no points)."""

    line_id: str
    qty_milli: int
    amount: int
    discount: int
    accruable: bool
    instant: int = 0

    @property
    def paid(self) -> int:
        return self.amount - self.discount - self.instant


@dataclass(frozen=True, slots=True)
class RefundMath:
    money_now: int  # money to give back with this refund (minor units)
    restored_points_now: int  # points to return to the customer now
    clawback_base_now: int  # b cumulative after this refund minus b before it
    cumulative_money: int  # money refunded by all refunds so far, this one included
    cumulative_dd: int  # ΣDd after this refund
    cumulative_b: int  # b after this refund (pass to clawback_now)
    restored_points_cumulative: int  # ⌊ΣDd/pv⌋ after this refund
    full: bool  # everything sold has now been returned


@dataclass(frozen=True, slots=True)
class _Sums:
    money: int
    dd: int
    b: int


def _sums(lines: Sequence[SoldLine], num: Mapping[str, int], den: Mapping[str, int]) -> _Sums:
    money = dd = b = 0
    for line in lines:
        n, q = num.get(line.line_id, 0), den[line.line_id]
        g, d, i = line.amount * n // q, line.discount * n // q, line.instant * n // q
        money += g - d - i
        dd += d
        if line.accruable:
            b += g - d - i
    return _Sums(money, dd, b)


def _math(before: _Sums, after: _Sums, pv: int, full: bool, money_now: int | None = None) -> RefundMath:
    restored_before, restored_after = before.dd // pv, after.dd // pv
    return RefundMath(
        money_now=after.money - before.money if money_now is None else money_now,
        restored_points_now=restored_after - restored_before,
        clawback_base_now=after.b - before.b,
        cumulative_money=after.money,
        cumulative_dd=after.dd,
        cumulative_b=after.b,
        restored_points_cumulative=restored_after,
        full=full,
    )


def refund_totals(
    lines: Sequence[SoldLine], returned_before: Mapping[str, int], returned_now: Mapping[str, int], pv: int
) -> RefundMath:
    """A per-line refund: ``returned_now`` are this refund's quantities (thousandths),
    ``returned_before`` the totals of earlier refunds of the same sale."""
    qty = {line.line_id: line.qty_milli for line in lines}
    for where, amounts in (("returned_before", returned_before), ("returned_now", returned_now)):
        for line_id, n in amounts.items():
            if line_id not in qty:
                raise RuleViolation(
                    "INVALID_RECEIPT", f"no line {line_id!r} in the sale", field=f"{where}.{line_id}"
                )
            if n < 0:
                raise RuleViolation("INVALID_RECEIPT", f"negative quantity {n}", field=f"{where}.{line_id}")
    after = {k: returned_before.get(k, 0) + returned_now.get(k, 0) for k in qty}
    for line_id, n in after.items():
        if n > qty[line_id]:
            raise RuleViolation(
                "REFUND_EXCEEDS_SALE",
                f"line {line_id}: {n} returned in total, {qty[line_id]} sold (thousandths)",
                field=line_id,
                available=qty[line_id] - returned_before.get(line_id, 0),
            )
    full = all(after[k] == qty[k] for k in qty)
    return _math(_sums(lines, returned_before, qty), _sums(lines, after, qty), pv, full)


def remaining_quantities(lines: Sequence[SoldLine], returned_before: Mapping[str, int]) -> dict[str, int]:
    """What a ``full`` refund returns now: each line's quantity not yet returned."""
    return {line.line_id: line.qty_milli - returned_before.get(line.line_id, 0) for line in lines}


def amount_refund_totals(
    lines: Sequence[SoldLine], refunded_before: int, refunded_now: int, pv: int
) -> RefundMath:
    """An amount-only refund of ``refunded_now`` minor units; ``refunded_before`` is the money
    of earlier amount-only refunds of the same sale. Fraction M/Σpaid replaces r/Q."""
    total_paid = sum(line.paid for line in lines)
    if refunded_now < 0 or refunded_before < 0:
        raise RuleViolation("INVALID_RECEIPT", "refund amount must not be negative", field="amount")
    m_after = refunded_before + refunded_now
    if m_after > total_paid:
        raise RuleViolation(
            "REFUND_EXCEEDS_SALE",
            f"{m_after} refunded in total, {total_paid} paid",
            field="amount",
            available=total_paid - refunded_before,
        )
    if total_paid == 0:
        zero = _Sums(0, 0, 0)
        return _math(zero, zero, pv, True, 0)

    def at(m: int) -> _Sums:
        num = {line.line_id: m for line in lines}
        den = {line.line_id: total_paid for line in lines}
        s = _sums(lines, num, den)
        return _Sums(m, s.dd, s.b)

    return _math(at(refunded_before), at(m_after), pv, m_after == total_paid, refunded_now)


def clawback_now(reward: int, b_cumulative: int, accrual_base: int, clawed_before: int) -> int:
    """The part of ``reward`` A to claw back now: ⌊A·b/B_a⌋ − what was clawed before (>= 0)."""
    if accrual_base <= 0 or reward <= 0:
        return 0
    b = min(max(b_cumulative, 0), accrual_base)
    return max(reward * b // accrual_base - clawed_before, 0)
