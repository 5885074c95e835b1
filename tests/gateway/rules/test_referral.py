"""referral_payouts (loyalty-rules.md §1 Referral)."""

from __future__ import annotations

import dataclasses

from gateway.rules.program import Program, Referral
from gateway.rules.referral import referral_payouts


def test_levels_are_floored_in_minor_units_then_points(seeds: dict[str, Program]) -> None:
    assert referral_payouts(seeds["seed000"], 47_500) == [14, 4, 4, 4, 4]
    assert referral_payouts(seeds["seed002"], 1_225_000) == [612, 122, 122]
    assert referral_payouts(seeds["seed003"], 4_000) == [0]


def test_decimal_levels_and_point_value(seeds: dict[str, Program]) -> None:
    p = dataclasses.replace(seeds["seed002"], pv=50, referral=Referral((250, 25), 0))
    # ⌊99 999 · 2,5 %⌋ = 2 499 -> ⌊2 499/50⌋ = 49; ⌊99 999 · 0,25 %⌋ = 249 -> 4.
    assert referral_payouts(p, 99_999) == [49, 4]


def test_no_referral_program(seeds: dict[str, Program]) -> None:
    assert referral_payouts(seeds["seed001"], 1_000_000) == []
