"""Rounding helpers and Russian display formatting."""

from __future__ import annotations

import pytest

from gateway.rules.money import fmt_money, fmt_pct, fmt_points, pct_of, points_of_pct


def test_percent_is_floored_in_minor_units_then_points() -> None:
    assert pct_of(1_238_999, 300) == 37_169
    assert points_of_pct(1_238_999, 300, 100) == 371
    assert points_of_pct(150_001, 3000, 100) == 450  # 45_000.3 -> 45_000 -> 450


@pytest.mark.parametrize(
    ("minor", "text"),
    [(123_456, "1 234,56"), (5, "0,05"), (0, "0,00"), (100_000_000, "1 000 000,00"), (-1_050, "-10,50")],
)
def test_money(minor: int, text: str) -> None:
    assert fmt_money(minor) == text


@pytest.mark.parametrize(("bp", "text"), [(400, "4 %"), (250, "2,5 %"), (1234, "12,34 %"), (5, "0,05 %")])
def test_pct(bp: int, text: str) -> None:
    assert fmt_pct(bp) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1 балл"),
        (2, "2 балла"),
        (4, "4 балла"),
        (5, "5 баллов"),
        (11, "11 баллов"),
        (12, "12 баллов"),
        (21, "21 балл"),
        (22, "22 балла"),
        (49, "49 баллов"),
        (111, "111 баллов"),
        (1_001, "1 001 балл"),
        (0, "0 баллов"),
    ],
)
def test_points(n: int, text: str) -> None:
    assert fmt_points(n) == text
