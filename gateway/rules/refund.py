"""Refund math (loyalty-rules.md §2.3), cumulative so the last refund closes the sale exactly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SoldLine:
    line_id: str
    qty_milli: int
    amount: int
    discount: int
    accruable: bool


@dataclass(frozen=True, slots=True)
class RefundMath:
    money_now: int
    restored_points_now: int
    clawback_base_now: int
    cumulative_money: int
    cumulative_dd: int
    cumulative_b: int
    restored_points_cumulative: int
    full: bool


def refund_totals(
    lines: Sequence[SoldLine], returned_before: Mapping[str, int], returned_now: Mapping[str, int], pv: int
) -> RefundMath:
    raise NotImplementedError


def amount_refund_totals(
    lines: Sequence[SoldLine], refunded_before: int, refunded_now: int, pv: int
) -> RefundMath:
    raise NotImplementedError


def clawback_now(reward: int, b_cumulative: int, accrual_base: int, clawed_before: int) -> int:
    raise NotImplementedError
