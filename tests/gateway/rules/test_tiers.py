"""tier_for (loyalty-rules.md §1 Tiers)."""

from __future__ import annotations

import dataclasses

from gateway.rules.program import Program, program_from_mapping
from gateway.rules.tiers import tier_for


def _tier(p: Program, spent: int = 0, count: int = 0, invited: int = 0, current: str | None = None) -> str:
    return tier_for(
        p, total_spent=spent, purchase_count=count, effective_invited=invited, current=current
    ).name


def test_spend_thresholds(seeds: dict[str, Program]) -> None:
    p = seeds["seed002"]
    assert _tier(p) == "1"
    assert _tier(p, 2_999_999) == "1"
    assert _tier(p, 3_000_000) == "2"  # a threshold met exactly is reached
    assert _tier(p, 50_000_000) == "5"


def test_purchase_thresholds(seeds: dict[str, Program]) -> None:
    p = seeds["seed003"]
    assert [_tier(p, count=n) for n in (0, 4, 5, 15, 59, 60)] == [
        "Покупатель",
        "Покупатель",
        "Дегустатор",
        "Шеф",
        "Гурман",
        "Маэстро",
    ]


def test_any_one_threshold_is_enough() -> None:
    p = program_from_mapping(
        {
            "id": "t",
            "tiers": [
                {"name": "A", "rate_pct": 1, "cap_pct": 5, "min_spent": 0},
                {"name": "B", "rate_pct": 2, "cap_pct": 5, "min_spent": 100_000, "min_invited": 3},
                {"name": "C", "rate_pct": 3, "cap_pct": 5, "min_purchases": 10},
            ],
        },
        "test",
    )
    assert _tier(p, invited=3) == "B"
    assert _tier(p, spent=100_000) == "B"
    assert _tier(p, spent=99_999, invited=2) == "A"
    assert _tier(p, count=10) == "C"


def test_tiers_never_drop_without_demotion(seeds: dict[str, Program]) -> None:
    p = seeds["seed002"]
    assert _tier(p, 0, current="3") == "3"  # refunds cut total_spent, the tier stays
    assert _tier(p, 30_000_000, current="3") == "4"  # but it still rises
    assert _tier(p, 0, current="no-such-tier") == "1"
    demoting = dataclasses.replace(p, tier_demotion=True)
    assert _tier(demoting, 0, current="3") == "1"
