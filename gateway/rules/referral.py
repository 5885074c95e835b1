"""Referral payouts (loyalty-rules.md §1 Referral)."""

from __future__ import annotations

from gateway.rules.program import Program


def referral_payouts(program: Program, accrual_base: int) -> list[int]:
    raise NotImplementedError
