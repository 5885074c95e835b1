"""calculate(): identification, check order, holds, goods, exclusions, policy, validation."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

from gateway.rules.calc import calculate, effective_flags, line_floor, open_lots, spending_order
from gateway.rules.program import Program, program_from_mapping
from gateway.rules.types import AccountState, LineIn, Lot, RuleViolation

from .helpers import lot, msk

AT = msk(2025, 6, 1)


def _program(**extra: Any) -> Program:
    data: dict[str, Any] = {
        "id": "t",
        "tiers": [{"name": "Шеф", "rate_pct": 4, "cap_pct": 20, "min_spent": 0}],
    }
    data.update(extra)
    return program_from_mapping(data, "test")


def _acc(points: int = 1_000, **kw: Any) -> AccountState:
    return AccountState("c1", kw.pop("tier", "Шеф"), lots=(lot("own", points),) if points else (), **kw)


def _code(exc: pytest.ExceptionInfo[RuleViolation]) -> str:
    return exc.value.code


def _raises(program: Program, account: AccountState | None, lines: list[LineIn], **kw: Any) -> RuleViolation:
    with pytest.raises(RuleViolation) as info:
        calculate(program, account, lines, at=kw.pop("at", AT), **kw)
    return info.value


ONE = [LineIn("L1", 100_000)]


def test_reason_matches_the_spec_example() -> None:
    calc = calculate(_program(), _acc(0), [LineIn("L1", 123_456)], at=AT)
    assert calc.points_to_accrue == 49
    accrual = [r for r in calc.applied_rules if r.rule_id == "tier_accrual"]
    assert [(r.amount, r.reason) for r in accrual] == [(49, "Статус «Шеф» 4 % от 1 234,56 → 49 баллов")]


def test_weak_identification_only_accrues() -> None:
    weak = _acc(method="phone")
    calc = calculate(_program(), weak, ONE, at=AT)
    assert (calc.max_points, calc.limited_by, calc.points_to_accrue) == (0, "identification", 40)
    assert _raises(_program(), weak, ONE, redeem_points=1).code == "REDEMPTION_NOT_PERMITTED"
    # ... unless the program lists the method in redeem_with.
    calc = calculate(_program(redeem_with=["phone"]), weak, ONE, redeem_points=10, at=AT)
    assert calc.redeemed == 10


def test_unknown_customer_sees_accrual_but_cannot_redeem() -> None:
    calc = calculate(_program(), None, ONE, at=AT)
    assert (calc.customer_id, calc.tier, calc.points_to_accrue) == ("", "Шеф", 40)
    assert (calc.max_points, calc.limited_by, calc.balance_before) == (0, "identification", 0)
    assert _raises(_program(), None, ONE, redeem_points=1).code == "REDEMPTION_NOT_PERMITTED"


def test_phone_otp_needs_a_confirmed_code() -> None:
    acc = _acc(method="phone_otp")
    assert calculate(_program(), acc, ONE, at=AT).max_points == 200  # showing the limit needs no code
    assert _raises(_program(), acc, ONE, redeem_points=5).code == "OTP_REQUIRED"
    assert _raises(_program(), acc, ONE, redeem_points=5, otp_ok=False).code == "OTP_INVALID"
    assert calculate(_program(), acc, ONE, redeem_points=5, otp_ok=True, at=AT).redeemed == 5


@pytest.mark.parametrize(
    ("account", "redeem", "otp_ok", "code"),
    [
        (_acc(10, method="card"), 500, None, "REDEMPTION_NOT_PERMITTED"),  # weak before anything else
        (_acc(10, method="phone_otp"), 500, None, "OTP_REQUIRED"),  # code before balance
        (_acc(10, method="phone_otp"), 500, False, "OTP_INVALID"),
        (_acc(10), 500, None, "INSUFFICIENT_POINTS"),  # balance before cap
        (_acc(1_000), 500, None, "REDEMPTION_CAP_EXCEEDED"),
    ],
)
def test_check_order(account: AccountState, redeem: int, otp_ok: bool | None, code: str) -> None:
    assert _raises(_program(), account, ONE, redeem_points=redeem, otp_ok=otp_ok).code == code


def test_insufficient_points_metadata() -> None:
    err = _raises(_program(), _acc(10), ONE, redeem_points=11)
    assert err.metadata == {"available": "10"}


def test_blocked_customer() -> None:
    assert _raises(_program(), _acc(blocked=True), ONE).code == "CUSTOMER_BLOCKED"


def test_redeem_max_takes_max_points() -> None:
    calc = calculate(_program(), _acc(1_000), ONE, redeem_max=True, at=AT)
    assert calc.redeemed == calc.max_points == 200
    calc = calculate(_program(), _acc(0), ONE, redeem_max=True, at=AT)
    assert calc.redeemed == 0
    calc = calculate(_program(), _acc(method="phone"), ONE, redeem_max=True, at=AT)
    assert calc.redeemed == 0  # nothing permitted: nothing taken, no error


def test_points_held_by_other_tills_are_not_spendable() -> None:
    soon, never = lot("soon", 500, expires_at=msk(2025, 7, 1, 0)), lot("never", 500)
    acc = AccountState("c", "Шеф", lots=(never, soon), held_by_others=700)
    calc = calculate(_program(), acc, ONE, redeem_points=30, at=AT)
    assert calc.balance_before == 1_000  # held points stay in the balance
    assert [(d.lot_id, d.points) for d in calc.debits] == [("never", 30)]
    calc = calculate(_program(), acc, [LineIn("L1", 10_000_000)], at=AT)
    assert (calc.max_points, calc.limited_by) == (300, "balance")
    assert _raises(_program(), acc, ONE, redeem_points=301).code == "INSUFFICIENT_POINTS"


def test_debt_is_separate_from_open_points() -> None:
    calc = calculate(_program(), _acc(100, debt=183), ONE, at=AT)
    assert (calc.balance_before, calc.max_points) == (100, 100)


def test_negative_balance_blocks_redemption() -> None:
    acc = AccountState("c", "Шеф", negative_balance=-83)
    calc = calculate(_program(allow_negative_balance=True), acc, ONE, at=AT)
    assert (calc.balance_before, calc.max_points, calc.limited_by) == (-83, 0, "balance")
    assert _raises(_program(), acc, ONE, redeem_points=1).code == "INSUFFICIENT_POINTS"


def test_certificate_cap_binds() -> None:
    cert = lot("cert", 1_000, certificate=True, cap_bp=1_000, expires_at=msk(2025, 6, 10, 0))
    calc = calculate(_program(), AccountState("c", "Шеф", lots=(cert,)), ONE, at=AT)
    assert (calc.max_points, calc.limited_by) == (100, "certificate_cap")


def test_certificate_first_then_ordinary_in_spending_order() -> None:
    cert = lot("cert", 50, certificate=True, cap_bp=2_000, expires_at=msk(2025, 6, 10, 0))
    old = lot("old", 100, created=msk(2023, 1, 1))
    young = lot("young", 100, created=msk(2024, 1, 1))
    expiring = lot("exp", 30, expires_at=msk(2025, 12, 1, 0))
    acc = AccountState("c", "Шеф", lots=(young, cert, old, expiring))
    calc = calculate(_program(), acc, ONE, redeem_points=150, at=AT)
    assert (calc.redeemed_certificate, calc.redeemed_ordinary) == (50, 100)
    assert [(d.lot_id, d.points) for d in calc.debits] == [("cert", 50), ("exp", 30), ("old", 70)]
    assert [r.rule_id for r in calc.applied_rules] == [
        "redemption_limit",
        "redeem_certificate",
        "redeem_points",
        "tier_accrual",
    ]


def test_line_floor_pct_binds() -> None:
    program = _program(
        line_floor_pct=50, tiers=[{"name": "A", "rate_pct": 1, "cap_pct": 100, "min_spent": 0}]
    )
    calc = calculate(program, _acc(10_000, tier="A"), [LineIn("L1", 10_000), LineIn("L2", 20_001)], at=AT)
    assert [line_floor(x, program) for x in (LineIn("a", 10_000), LineIn("b", 20_001))] == [5_000, 10_001]
    assert (calc.max_points, calc.limited_by) == (150, "line_floor")


def test_min_unit_price_floor_counts_quantity() -> None:
    assert line_floor(LineIn("a", 30_000, qty_milli=2_500, min_unit_price=10_001), _program()) == 25_003


def test_program_exclusion_lists() -> None:
    program = _program(no_redeem_skus=["tobacco"], no_accrue_categories=["alcohol"])
    lines = [
        LineIn("L1", 50_000, sku="tobacco"),
        LineIn("L2", 50_000, category="alcohol"),
        LineIn("L3", 50_000),
    ]
    assert effective_flags(lines[0], program) == (False, True)
    assert effective_flags(lines[1], program) == (True, False)
    calc = calculate(program, _acc(10_000), lines, redeem_points=100, at=AT)
    assert calc.redeemable_base == 100_000
    assert [x.discount for x in calc.lines] == [0, 5_000, 5_000]
    assert calc.accrual_base == 50_000 + 45_000
    ids = [r.rule_id for r in calc.applied_rules]
    assert ids.count("no_redeem") == 1 and ids.count("no_accrue") == 1


def test_goods_for_points() -> None:
    program = _program(goods_for_points=True)
    lines = [LineIn("L1", 100_000), LineIn("G1", 30_000, point_price=300)]
    acc = AccountState("c", "Шеф", lots=(lot("a", 200, expires_at=msk(2025, 9, 1, 0)), lot("b", 800)))
    calc = calculate(program, acc, lines, redeem_points=100, at=AT)
    goods_line = calc.lines[1]
    assert (goods_line.discount, goods_line.paid, goods_line.points_paid, goods_line.accrues) == (
        30_000,
        0,
        300,
        False,
    )
    assert calc.goods_points == 300 and calc.redeemed == 100
    assert calc.redeemable_base == 100_000 and calc.max_points == 200  # cap on money lines only
    assert calc.payable == 130_000 - 30_000 - 10_000
    assert calc.points_to_accrue == 36  # 4 % of 90 000 paid on L1
    assert [(d.lot_id, d.points) for d in calc.debits] == [("a", 200), ("b", 200)]
    # Goods need the points, strong identification, and a program that sells them.
    assert _raises(program, _acc(299), lines).code == "INSUFFICIENT_POINTS"
    assert _raises(program, _acc(1_000, method="phone"), lines).code == "REDEMPTION_NOT_PERMITTED"
    assert _raises(_program(), _acc(), lines).code == "INVALID_RECEIPT"
    # The points left after the goods bound ordinary redemption.
    assert _raises(program, _acc(400), lines, redeem_points=101).code == "INSUFFICIENT_POINTS"


def test_discount_policy_gives_an_instant_discount_and_no_accrual() -> None:
    program = _program(policy="discount")
    lines = [LineIn("L1", 100_000), LineIn("L2", 50_001, min_unit_price=50_000)]
    calc = calculate(program, _acc(0), lines, at=AT)
    # ⌊150 001 · 4 %⌋ = 6 000 spread on capacities 100 000 / 1: raw 5 999,94 / 0,06.
    assert calc.instant_discount == 6_000
    assert [x.discount for x in calc.lines] == [6_000, 0]
    tiny = calculate(program, _acc(0), [LineIn("L1", 10_000, min_unit_price=9_900)], at=AT)
    assert tiny.instant_discount == 100  # 4 % would be 400; the floor leaves room for 100
    assert calc.points_to_accrue == 0 and calc.payable == 144_001
    assert any(r.rule_id == "instant_discount" and r.amount == 6_000 for r in calc.applied_rules)
    assert calculate(program, None, lines, at=AT).instant_discount == 0


def test_discount_policy_respects_floors_after_redemption() -> None:
    program = _program(
        policy="discount", tiers=[{"name": "A", "rate_pct": 50, "cap_pct": 50, "min_spent": 0}]
    )
    calc = calculate(
        program, _acc(1_000, tier="A"), [LineIn("L1", 10_000, min_unit_price=2_000)], redeem_points=50, at=AT
    )
    assert calc.redeemed == 50 and calc.instant_discount == 3_000  # capacity 8 000 − 5 000 points
    assert calc.lines[0].paid == 2_000


def test_unknown_tier_name_is_derived_from_counters(seeds: Mapping[str, Program]) -> None:
    acc = AccountState("c", "gone", total_spent=10_000_000)
    assert calculate(seeds["seed002"], acc, ONE, at=AT).tier == "3"


def test_nothing_discountable_is_limited_by_none() -> None:
    calc = calculate(_program(), _acc(), [LineIn("L1", 1_000, discountable=False)], at=AT)
    assert (calc.max_points, calc.limited_by) == (0, "none")


def test_accrual_is_floored_once_per_receipt() -> None:
    lines = [LineIn(f"L{i}", 2_499) for i in range(4)]  # each alone would give 0 points
    assert calculate(_program(), _acc(0), lines, at=AT).points_to_accrue == 3  # ⌊399,84/100⌋


@pytest.mark.parametrize(
    ("lines", "kw", "field"),
    [
        ([], {}, "lines"),
        ([LineIn("L1", 100, qty_milli=0)], {}, "lines[0].qty_milli"),
        ([LineIn("L1", -1)], {}, "lines[0].amount"),
        ([LineIn("L1", 100), LineIn("L1", 100)], {}, "lines[1].line_id"),
        ([LineIn("", 100)], {}, "lines[0].line_id"),
        ([LineIn("L1", 100, min_unit_price=101)], {}, "lines[0].min_unit_price"),
        ([LineIn("L1", 100, point_price=-1)], {}, "lines[0].point_price"),
        (ONE, {"redeem_points": -1}, "redeem_points"),
        (ONE, {"at": datetime(2025, 1, 1)}, "occurred_at"),
    ],
)
def test_invalid_receipts(lines: list[LineIn], kw: dict[str, Any], field: str) -> None:
    err = _raises(_program(), _acc(), lines, **kw)
    assert (err.code, err.metadata.get("field")) == ("INVALID_RECEIPT", field)


def test_open_lots_and_spending_order() -> None:
    at = msk(2025, 3, 10, 0)
    lots: list[Lot] = [
        lot("expired", 10, expires_at=at),
        lot("empty", 0),
        lot("deferred", 10, available_from=msk(2025, 3, 11, 0)),
        lot("never_old", 10, created=msk(2020, 1, 1)),
        lot("never_new", 10, created=msk(2021, 1, 1)),
        lot("later", 10, expires_at=msk(2025, 5, 1, 0)),
        lot("sooner", 10, expires_at=msk(2025, 4, 1, 0)),
        lot("cert", 10, expires_at=msk(2025, 6, 1, 0), certificate=True),
        lot("just_open", 10, expires_at=msk(2025, 3, 10, 0, 1)),
    ]
    opened = open_lots(lots, at)
    assert {x.lot_id for x in opened} == {"never_old", "never_new", "later", "sooner", "cert", "just_open"}
    assert [x.lot_id for x in spending_order(opened)] == [
        "cert",
        "just_open",
        "sooner",
        "later",
        "never_old",
        "never_new",
    ]


def test_available_by_shows_lots_held_at_processing_as_spendable() -> None:
    from datetime import UTC, timedelta

    from gateway.rules.calc import available_by, open_lots
    from gateway.rules.types import Lot

    at = datetime(2025, 3, 9, 12, 0, 5, tzinfo=UTC)  # the till's stamp, truncated to the second
    made = at + timedelta(milliseconds=700)  # the previous receipt's accrual, a moment "later"
    later = at + timedelta(days=2)  # deferred points, not yet available at processing
    lots = (
        Lot("a", "accrual", 10, made, made, None),
        Lot("d", "accrual", 5, made, later, None),
        Lot("x", "accrual", 7, at, at, at),  # expired at the receipt's own time
    )
    assert [lot.lot_id for lot in open_lots(lots, at)] == []
    shown = available_by(lots, at, at + timedelta(seconds=1))
    assert [lot.lot_id for lot in open_lots(shown, at)] == ["a"]  # deferred stays out, expiry judged at at
    assert available_by(lots, at, at) == lots  # processed at its own time: nothing changes
