"""Tier resolution (loyalty-rules.md §1 Tiers).

A tier is reached when any one of its thresholds (min_spent, min_purchases, min_invited) is
met; the customer holds the highest tier reached. Tiers never drop unless the program sets
``tier_demotion = true``. The program's tiers are ordered lowest first (the loader checks it);
the lowest tier is the floor everyone holds.
"""

from __future__ import annotations

from gateway.rules.program import Program, Tier


def reached(tier: Tier, *, total_spent: int, purchase_count: int, effective_invited: int) -> bool:
    """Whether any one of the tier's thresholds is met."""
    return (
        (tier.min_spent is not None and total_spent >= tier.min_spent)
        or (tier.min_purchases is not None and purchase_count >= tier.min_purchases)
        or (tier.min_invited is not None and effective_invited >= tier.min_invited)
    )


def tier_for(
    program: Program, *, total_spent: int, purchase_count: int, effective_invited: int, current: str | None
) -> Tier:
    """The tier the customer holds given the counters; ``current`` is the tier held now.

    Without ``tier_demotion`` the result is never below ``current`` (a ``current`` name the
    program no longer has is ignored).
    """
    best = 0
    for i, tier in enumerate(program.tiers):
        if reached(
            tier, total_spent=total_spent, purchase_count=purchase_count, effective_invited=effective_invited
        ):
            best = i
    if current is not None and not program.tier_demotion:
        for i, tier in enumerate(program.tiers):
            if tier.name == current:
                best = max(best, i)
    return program.tiers[best]
