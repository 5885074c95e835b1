"""Worked examples E1-E11 of loyalty-rules.md §5, where the rule engine owns the figure.

E12 (idempotency, cancel) and the account bookkeeping of E6/E9 (lots, debt) belong to the
reference core; here we check every figure the pure functions produce.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from gateway.rules.calc import calculate
from gateway.rules.dates import birthday_in_year, expiry_for
from gateway.rules.program import Program
from gateway.rules.referral import referral_payouts
from gateway.rules.refund import SoldLine, clawback_now, refund_totals, remaining_quantities
from gateway.rules.tiers import tier_for
from gateway.rules.types import AccountState, LineIn, RuleViolation

from .helpers import lot, msk

AT = msk(2025, 6, 1)


def _account(tier: str, points: int = 0, *, total_spent: int = 0) -> AccountState:
    lots = (lot("own", points),) if points else ()
    return AccountState("cust", tier, lots=lots, total_spent=total_spent)


def test_e1_tier_rate_and_excluded_line(seeds: dict[str, Program]) -> None:
    lines = [
        LineIn("L1", 899_000),
        LineIn("L2", 339_999, qty_milli=3000),
        LineIn("L3", 50_000, discountable=False, accruable=False),
    ]
    calc = calculate(seeds["seed002"], _account("1"), lines, at=AT)
    assert calc.payable == 1_288_999
    assert calc.accrual_base == 1_238_999
    assert calc.points_to_accrue == 371
    assert (calc.max_points, calc.limited_by) == (0, "balance")
    assert [line.accrues for line in calc.lines] == [True, True, False]


E2_LINES = [LineIn("L1", 33_333), LineIn("L2", 33_333), LineIn("L3", 33_334)]


def test_e2_cap_and_largest_remainder(seeds: dict[str, Program]) -> None:
    program, account = seeds["seed000"], _account("Уровень 1", 1_000)
    assert calculate(program, account, E2_LINES, at=AT).max_points == 50
    with pytest.raises(RuleViolation) as info:
        calculate(program, account, E2_LINES, redeem_points=60, at=AT)
    assert info.value.code == "REDEMPTION_CAP_EXCEEDED"
    assert info.value.metadata == {"available": "1000", "max_points": "50", "limited_by": "tier_cap"}
    calc = calculate(program, account, E2_LINES, redeem_points=50, at=AT)
    assert [line.discount for line in calc.lines] == [1_667, 1_666, 1_667]
    assert calc.payable == 95_000 and calc.points_to_accrue == 19
    assert calc.balance_before - calc.redeemed + calc.points_to_accrue == 969
    assert calc.redeemed_ordinary == 50 and calc.redeemed_certificate == 0


def test_e3_line_floor(seeds: dict[str, Program]) -> None:
    lines = [
        LineIn("L1", 100_000, min_unit_price=90_000),
        LineIn("L2", 50_001, qty_milli=3000),
        LineIn("L3", 19_999, discountable=False),
    ]
    program, account = seeds["seed002"], _account("5", 5_000)
    calc = calculate(program, account, lines, at=AT)
    assert calc.redeemable_base == 150_001 and calc.max_points == 450
    calc = calculate(program, account, lines, redeem_points=450, at=AT)
    assert [line.discount for line in calc.lines] == [7_500, 37_500, 0]
    assert calc.payable == 125_000 and calc.points_to_accrue == 125
    assert calc.lines[0].paid == 92_500  # stays above its floor of 90_000


def test_e4_promotion(seeds: dict[str, Program]) -> None:
    program = seeds["seed002"]
    first = calculate(program, _account("1", total_spent=2_950_000), [LineIn("L1", 100_000)], at=AT)
    assert first.points_to_accrue == 30
    tier = tier_for(program, total_spent=3_050_000, purchase_count=1, effective_invited=0, current="1")
    assert tier.name == "2"
    second = calculate(program, _account(tier.name, total_spent=3_050_000), [LineIn("L1", 100_000)], at=AT)
    assert second.points_to_accrue == 50


def test_e5_referral_chain(seeds: dict[str, Program]) -> None:
    program = seeds["seed002"]
    calc = calculate(program, _account("1"), [LineIn("L1", 1_225_000)], at=AT)
    assert calc.points_to_accrue == 367  # D
    assert referral_payouts(program, calc.accrual_base) == [612, 122, 122]  # C, B, A; W beyond depth 3


def test_e6_welcome_and_invite_bonus(seeds: dict[str, Program]) -> None:
    program = seeds["seed000"]
    assert program.welcome_points == 100
    account = AccountState("F", "Уровень 1", lots=(lot("welcome", 100, source="welcome"),))
    calc = calculate(program, account, [LineIn("L1", 50_000)], redeem_points=25, at=AT)
    assert calc.payable == 47_500 and calc.points_to_accrue == 9
    assert calc.balance_before - calc.redeemed + calc.points_to_accrue == 84
    payouts = referral_payouts(program, calc.accrual_base)
    assert program.referral is not None
    assert payouts[0] + program.referral.invite_bonus_points == 214  # E, first purchase
    assert payouts[1] == 4  # D
    assert payouts[0] == 14  # E, on an identical second purchase (no invite bonus)


def test_e7_floors(seeds: dict[str, Program]) -> None:
    program = seeds["seed003"]
    assert program.referral is not None
    first = calculate(program, _account("Покупатель"), [LineIn("L1", 4_000)], at=AT)
    assert first.points_to_accrue == 0
    assert referral_payouts(program, first.accrual_base)[0] + program.referral.invite_bonus_points == 3
    second = calculate(program, _account("Покупатель"), [LineIn("L1", 25_000)], at=AT)
    assert second.points_to_accrue == 5
    assert referral_payouts(program, second.accrual_base) == [2]


E8_LINES = [
    LineIn("L1", 449_700, qty_milli=3000),
    LineIn("L2", 235_050),
    LineIn("L3", 17_980, qty_milli=2000, discountable=False),
]


def test_e8_sale(seeds: dict[str, Program]) -> None:
    program, account = seeds["seed002"], _account("2", 2_000)
    assert calculate(program, account, E8_LINES, at=AT).max_points == 1_027
    calc = calculate(program, account, E8_LINES, redeem_points=1_000, at=AT)
    assert [line.discount for line in calc.lines] == [65_674, 34_326, 0]
    assert [line.paid for line in calc.lines] == [384_026, 200_724, 17_980]
    assert calc.accrual_base == 602_730
    assert calc.points_to_accrue == 301
    assert referral_payouts(program, calc.accrual_base)[:2] == [301, 60]  # Y, Z
    assert calc.balance_before - calc.redeemed + calc.points_to_accrue == 1_301


def test_e8_partial_refunds() -> None:
    sold = [
        SoldLine("L1", 3000, 449_700, 65_674, True),
        SoldLine("L2", 1000, 235_050, 34_326, True),
        SoldLine("L3", 2000, 17_980, 0, True),
    ]
    r1 = refund_totals(sold, {}, {"L1": 1000}, 100)
    assert (r1.money_now, r1.cumulative_dd, r1.restored_points_now) == (128_009, 21_891, 218)
    rewards = {"X": 301, "Y": 301, "Z": 60}
    claw1 = {k: clawback_now(a, r1.cumulative_b, 602_730, 0) for k, a in rewards.items()}
    assert claw1 == {"X": 63, "Y": 63, "Z": 12}
    assert 1_301 + 218 - 63 == 1_456  # X's balance: restored credited, then clawback debited
    r2 = refund_totals(sold, {"L1": 1000}, remaining_quantities(sold, {"L1": 1000}), 100)
    assert (r2.money_now, r2.restored_points_now, r2.full) == (474_721, 782, True)
    claw2 = {k: clawback_now(a, r2.cumulative_b, 602_730, claw1[k]) for k, a in rewards.items()}
    assert claw2 == {"X": 238, "Y": 238, "Z": 48}
    assert 1_456 + 782 - 238 == 2_000


def test_e9_clawback_beyond_balance(seeds: dict[str, Program]) -> None:
    program = seeds["seed002"]
    s1 = calculate(program, _account("1"), [LineIn("L1", 1_000_000)], at=AT)
    assert s1.points_to_accrue == 300
    s2 = calculate(program, _account("1", 300), [LineIn("L1", 250_000)], redeem_points=250, at=AT)
    assert s2.points_to_accrue == 67
    balance = 300 - 250 + 67
    assert balance == 117
    refund = refund_totals([SoldLine("L1", 1000, 1_000_000, 0, True)], {}, {"L1": 1000}, 100)
    claw = clawback_now(300, refund.cumulative_b, s1.accrual_base, 0)
    assert claw == 300
    assert (max(balance - claw, 0), max(claw - balance, 0)) == (0, 183)  # balance, debt


def test_e10_expiry_and_spending_order(seeds: dict[str, Program]) -> None:
    program = seeds["seed002"]
    a_exp = expiry_for(program, msk(2024, 3, 10, 15))
    assert a_exp == msk(2025, 3, 10, 0)
    b_exp = msk(2025, 11, 2, 0)
    lots = (
        lot("B", 150, created=msk(2024, 11, 2), expires_at=b_exp),
        lot("A", 200, created=msk(2024, 3, 10), expires_at=a_exp),
    )
    day = msk(2025, 3, 9, 18)
    calc = calculate(
        program, AccountState("c", "1", lots=lots), [LineIn("L1", 150_000)], redeem_points=120, at=day
    )
    assert [(d.lot_id, d.points) for d in calc.debits] == [("A", 120)]
    assert calc.points_to_accrue == 41
    assert expiry_for(program, day) == msk(2026, 3, 9, 0)
    assert calc.balance_before - 120 + 41 == 271
    later = (
        lot("A", 80, expires_at=a_exp),
        lots[0],
        lot("new", 41, created=day, expires_at=msk(2026, 3, 9, 0)),
    )
    midnight = msk(2025, 3, 10, 0)
    calc = calculate(program, AccountState("c", "1", lots=later), [LineIn("L1", 200_000)], at=midnight)
    assert calc.balance_before == 191
    assert (calc.max_points, calc.limited_by) == (191, "balance")


def test_e11_birthday_certificate(seeds: dict[str, Program]) -> None:
    program = seeds["seed002"]
    grant = program.grants[0]
    assert (grant.kind, grant.points, grant.cap_bp) == ("birthday", 1_000, 2_000)
    granted = msk(2025, 5, 14, 9)
    assert birthday_in_year(date(1990, 5, 14), 2025) == granted.date()
    expires = expiry_for(program, granted, grant.valid_days)
    assert expires == msk(2025, 5, 29, 0)
    cert = lot("cert", 1_000, created=granted, expires_at=expires, certificate=True, cap_bp=grant.cap_bp)
    account = AccountState("c", "1", lots=(lot("ord", 400), cert))
    lines = [LineIn("L1", 300_000), LineIn("L2", 150_000)]
    day = msk(2025, 5, 20)
    calc = calculate(program, account, lines, at=day)
    assert (calc.max_points, calc.limited_by) == (900, "combined_cap")
    with pytest.raises(RuleViolation) as info:
        calculate(program, account, lines, redeem_points=1_000, at=day)
    assert info.value.code == "REDEMPTION_CAP_EXCEEDED"
    calc = calculate(program, account, lines, redeem_points=900, at=day)
    assert (calc.redeemed_certificate, calc.redeemed_ordinary) == (900, 0)
    assert [d.discount for d in calc.lines] == [60_000, 30_000]
    assert calc.payable == 360_000 and calc.points_to_accrue == 108
    assert [(d.lot_id, d.points) for d in calc.debits] == [("cert", 900)]
    after = AccountState(
        "c", "1", lots=(lot("ord", 400), lot("new", 108), dataclasses.replace(cert, points=100))
    )
    assert calculate(program, after, lines, at=msk(2025, 5, 29, 0)).balance_before == 508
