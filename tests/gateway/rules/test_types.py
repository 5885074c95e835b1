"""gateway.rules.types: the engine's frozen value types, Calculation.redeemed, RuleViolation's
code / message / string metadata."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

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
from tests.gateway.rules.helpers import T0, lot


def calculation(**kw: object) -> Calculation:
    base: dict[str, object] = {
        "customer_id": "c1", "tier": "A", "lines": (LineOut("1", 0, 1000, True),), "gross": 1000,
        "redeemable_base": 1000, "max_points": 100, "limited_by": "tier_cap", "redeemed_certificate": 0,
        "redeemed_ordinary": 0, "payable": 1000, "accrual_base": 1000, "points_to_accrue": 30,
        "balance_before": 500,
    }
    base.update(kw)
    return Calculation(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("cert", "ordinary", "total"), [(0, 0, 0), (7, 0, 7), (0, 9, 9), (30, 12, 42)])
def test_redeemed_is_certificate_plus_ordinary(cert: int, ordinary: int, total: int) -> None:
    assert calculation(redeemed_certificate=cert, redeemed_ordinary=ordinary).redeemed == total


def test_calculation_defaults() -> None:
    c = calculation()
    assert (c.instant_discount, c.goods_points, c.debits, c.applied_rules) == (0, 0, (), ())


def test_defaults_of_account_and_line() -> None:
    a = AccountState("c1", "A")
    assert (a.lots, a.debt, a.held_by_others, a.total_spent, a.purchase_count, a.effective_invited) == (
        (), 0, 0, 0, 0, 0)
    assert (a.method, a.blocked, a.negative_balance) == ("app_code", False, 0)
    line = LineIn("1", 500)
    assert (line.qty_milli, line.sku, line.category, line.min_unit_price, line.point_price) == (
        1000, "", "", None, 0)
    assert line.discountable and line.accruable
    assert LineOut("1", 0, 500, False).points_paid == 0
    assert Lot("l", "welcome", 5, T0, T0, None) == lot("l", 5, source="welcome")
    assert (lot("l", 5).certificate, lot("l", 5).cap_bp) == (False, 0)


@pytest.mark.parametrize("obj", [
    lot("l", 1), AccountState("c", "A"), LineIn("1", 1), LineOut("1", 0, 1, True),
    AppliedRule("r", 1, "x"), Debit("l", 1), calculation(),
])
def test_value_types_are_frozen_and_slotted(obj: object) -> None:
    field = dataclasses.fields(obj)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, "other")
    with pytest.raises((AttributeError, TypeError)):
        obj.not_a_field = 1  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(obj)) == obj


def test_rule_violation_carries_code_message_and_string_metadata() -> None:
    err = RuleViolation("REDEMPTION_CAP_EXCEEDED", "at most 120 points", max_points=120,
                        limited_by="tier_cap", available=0)
    assert (err.code, err.message) == ("REDEMPTION_CAP_EXCEEDED", "at most 120 points")
    assert err.metadata == {"max_points": "120", "limited_by": "tier_cap", "available": "0"}
    assert str(err) == "REDEMPTION_CAP_EXCEEDED: at most 120 points"
    assert isinstance(err, Exception)
    assert RuleViolation("INVALID_RECEIPT", "no lines").metadata == {}
