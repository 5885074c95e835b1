"""Tier resolution (loyalty-rules.md §1 Tiers)."""

from __future__ import annotations

from gateway.rules.program import Program, Tier


def tier_for(
    program: Program, *, total_spent: int, purchase_count: int, effective_invited: int, current: str | None
) -> Tier:
    raise NotImplementedError
