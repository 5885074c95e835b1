"""Largest-remainder allocation (loyalty-rules.md §2.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.rules.calc import allocate


def test_e2_ties_go_to_the_earlier_line() -> None:
    assert allocate(5_000, [33_333, 33_333, 33_334]) == [1_667, 1_666, 1_667]


def test_e3_zero_capacity_lines_get_nothing() -> None:
    assert allocate(45_000, [10_000, 50_001, 0]) == [7_500, 37_500, 0]


def test_e8_split() -> None:
    assert allocate(100_000, [449_700, 235_050, 0]) == [65_674, 34_326, 0]


def test_equal_fractions_go_to_the_larger_capacity_first() -> None:
    # 1 unit over capacities 1 and 3 (Σ=4): shares 0.25 / 0.75 -> larger fraction wins.
    assert allocate(1, [1, 3]) == [0, 1]
    # 2 units over [2, 2, 1]: raw 0.8/0.8/0.4 -> both 0.8s win; ties 2 vs 2 -> order.
    assert allocate(2, [2, 2, 1]) == [1, 1, 0]
    # 1 unit over [3, 6, 3] (Σ=12): raw .25/.5/.25 -> the middle one.
    assert allocate(1, [3, 6, 3]) == [0, 1, 0]


def test_equal_fraction_ties_prefer_larger_capacity_over_earlier_line() -> None:
    # 3 units over [1, 2, 1, 2] (Σ=6): raw .5/1/.5/1 -> base 0/1/0/1, leftover 1, fractions
    # .5 and .5 tie on the capacity-1 lines -> earlier one.
    assert allocate(3, [1, 2, 1, 2]) == [1, 1, 0, 1]
    # 5 units over [5, 10, 5, 10] (Σ=30): raw 5/6 each .83 on 5s, 1.67 on 10s: fractions
    # .833 (cap 5) vs .667 (cap 10) -> the 5s first.
    assert allocate(5, [5, 10, 5, 10]) == [1, 2, 1, 1]


def test_zero_total_and_empty() -> None:
    assert allocate(0, [0, 0]) == [0, 0]
    assert allocate(0, []) == []


@pytest.mark.parametrize(("total", "caps"), [(11, [5, 5]), (-1, [5]), (1, [-1, 5])])
def test_impossible_requests_are_refused(total: int, caps: list[int]) -> None:
    with pytest.raises(ValueError):
        allocate(total, caps)


@st.composite
def _case(draw: st.DrawFn) -> tuple[int, list[int]]:
    caps = draw(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30))
    total = draw(st.integers(min_value=0, max_value=sum(caps)))
    return total, caps


@given(_case())
def test_sum_is_exact_and_no_share_exceeds_its_capacity(case: tuple[int, list[int]]) -> None:
    total, caps = case
    shares = allocate(total, caps)
    assert sum(shares) == total
    assert all(0 <= d <= c for d, c in zip(shares, caps, strict=True))


@given(_case())
def test_each_share_is_within_one_of_the_exact_proportion(case: tuple[int, list[int]]) -> None:
    total, caps = case
    cap_sum = sum(caps)
    for d, c in zip(allocate(total, caps), caps, strict=True):
        exact_floor = total * c // cap_sum if cap_sum else 0
        assert d in (exact_floor, exact_floor + 1)


@given(_case())
def test_deterministic_and_reproducible(case: tuple[int, list[int]]) -> None:
    total, caps = case
    assert allocate(total, caps) == allocate(total, list(caps))


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=2, max_value=20))
def test_identical_lines_ties_go_to_earlier_lines(cap: int, n: int) -> None:
    caps = [cap] * n
    total = cap * n // 3
    shares = allocate(total, caps)
    # Shares are non-increasing along the receipt: extra units go to earlier lines first.
    assert shares == sorted(shares, reverse=True)
    assert max(shares) - min(shares) <= 1
