"""Referral payouts (loyalty-rules.md §1 Referral, §2.4 rounding).

The k-th ancestor of the buyer gets ⌊⌊B_a·levels_bp[k]/10 000⌋/pv⌋ points, where B_a is the
receipt's accrual base (money paid on accruable lines). The depth is ``len(levels_bp)``.
Skipping blocked ancestors (their share is not passed up) and the invite bonus at the
friend's first purchase are the core's business: this module only computes the amounts.
"""

from __future__ import annotations

from gateway.rules.money import points_of_pct
from gateway.rules.program import Program


def referral_payouts(program: Program, accrual_base: int) -> list[int]:
    """Points for levels 1..depth (empty when the program has no referral)."""
    if program.referral is None:
        return []
    return [points_of_pct(accrual_base, bp, program.pv) for bp in program.referral.levels_bp]
