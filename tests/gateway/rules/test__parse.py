"""gateway.rules._parse: program mapping -> Program plus every problem, never raising: each key
of the schema read into its field (percentages as basis points), tiers ascending with a reachable
first tier, referral levels, grants, the informational keys kept typed in ``extra``."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.rules._model import GrantRule, Program, Referral, Tier
from gateway.rules._parse import GRANT_KINDS, METHODS, freeze_extra, parse
from gateway.rules._schema import Collector, Problem

CURRENCY_FIX = 'use three capital letters, e.g. "RUB"'
TIER0 = {"name": "A", "rate_pct": 3, "cap_pct": 10, "min_spent": 0}


def run(data: dict[str, Any]) -> tuple[Program, list[Problem]]:
    c = Collector()
    return parse(data, c), c.problems


def problems_of(data: dict[str, Any]) -> list[Problem]:
    return run({"id": "p", "tiers": [TIER0], **data})[1]


def test_every_key_is_read_into_its_field() -> None:
    program, problems = run({
        "id": "full", "currency": "KZT", "point_value_minor": 50, "timezone": "Asia/Almaty",
        "policy": "discount", "expiry_days": 365, "defer_days": 14, "allow_negative_balance": True,
        "tier_demotion": True, "welcome_points": 300, "identify": ["phone", "card"],
        "redeem_with": ["phone_otp"],
        "tiers": [TIER0, {"name": "B", "rate_pct": 5.5, "cap_pct": 20, "min_spent": 1000, "min_invited": 3}],
        "referral": {"levels_pct": [5, 1.25], "invite_bonus_points": 50},
        "grants": [{"kind": "birthday", "points": 1000, "valid_days": 15, "cap_pct": 20},
                   {"kind": "winback", "after_days": 30, "days_before": 2, "platform": "2GIS", "mode": "x"}],
        "goods_for_points": True, "no_redeem_skus": ["S1"], "no_redeem_categories": ["tobacco"],
        "no_accrue_skus": ["S2", "S3"], "no_accrue_categories": ["alcohol"], "line_floor_pct": 1,
        "reference_discount_pct": 7.5, "included_receipts_per_month": 1000, "extra_receipt_price": 15,
        "sms_price": 300, "hold_ttl_s": 120, "cashier_award_points": 10,
        "name": "Кафе", "offline_stores": 2, "online_store": False, "notify": ["push", "sms"],
    })
    assert problems == []
    assert program == Program(
        id="full", currency="KZT", pv=50, timezone="Asia/Almaty", policy="discount", expiry_days=365,
        defer_days=14, allow_negative_balance=True, tier_demotion=True, welcome_points=300,
        identify=("phone", "card"), redeem_with=("phone_otp",),
        tiers=(Tier("A", 300, 1000, min_spent=0), Tier("B", 550, 2000, min_spent=1000, min_invited=3)),
        referral=Referral((500, 125), 50),
        grants=(GrantRule("birthday", points=1000, valid_days=15, cap_bp=2000),
                GrantRule("winback", after_days=30, days_before=2, platform="2GIS", mode="x")),
        goods_for_points=True, no_redeem_skus=frozenset({"S1"}), no_redeem_categories=frozenset({"tobacco"}),
        no_accrue_skus=frozenset({"S2", "S3"}), no_accrue_categories=frozenset({"alcohol"}),
        line_floor_bp=100, reference_discount_bp=750, included_receipts_per_month=1000,
        extra_receipt_price=15, sms_price=300, hold_ttl_s=120, cashier_award_points=10,
        extra={"name": "Кафе", "notify": ("push", "sms"), "offline_stores": 2, "online_store": False},
    )


def test_never_raises_on_wrong_types_and_reports_each() -> None:
    program, problems = run({"id": 5, "tiers": "x", "referral": 5, "grants": {"kind": "x"},
                             "identify": "phone", "timezone": 3, "point_value_minor": 0})
    assert program.id == "" and program.tiers == () and program.referral is None and program.grants == ()
    assert program.pv == 100 and program.timezone == "Europe/Moscow"
    assert [p[0] for p in problems] == ["timezone", "id", "point_value_minor", "identify", "tiers",
                                        "referral", "grants"]


def test_an_empty_mapping_needs_id_and_tiers() -> None:
    assert [p[:2] for p in run({})[1]] == [
        ("id", "required key is missing"), ("tiers", "required key is missing")]


@pytest.mark.parametrize(("data", "expected"), [
    ({"colour": 1}, [("colour", "unknown key", "remove it; known keys here: ")]),
    ({"pv": 100}, [("pv", "unknown key", "did you mean 'point_value_minor'?")]),
    ({"timezone": "Mars/Olympus"}, [("timezone", "unknown time zone 'Mars/Olympus'",
                                     'use an IANA name such as "Europe/Moscow"')]),
    ({"timezone": "../etc"}, [("timezone", "unknown time zone '../etc'", "use an IANA name")]),
    ({"currency": "rub"}, [("currency", "'rub' is not an ISO 4217 code", CURRENCY_FIX)]),
    ({"currency": "RU"}, [("currency", "'RU' is not an ISO 4217 code", CURRENCY_FIX)]),
    ({"currency": "РУБ"}, [("currency", "'РУБ' is not an ISO 4217 code", CURRENCY_FIX)]),
    ({"currency": "R1B"}, [("currency", "'R1B' is not an ISO 4217 code", CURRENCY_FIX)]),
    ({"policy": "rebate"}, [("policy", "'rebate' is not one of cashback, discount",
                             "use one of: cashback, discount")]),
    ({"identify": ["face"]}, [("identify[0]", f"'face' is not one of {', '.join(METHODS)}",
                               f"use one of: {', '.join(METHODS)}")]),
    ({"line_floor_pct": 101}, [("line_floor_pct", "101 % is above 100 %", "use a value between 0 and 100")]),
    ({"expiry_days": -1}, [("expiry_days", "-1 is negative", "use a value >= 0")]),
])
def test_top_level_problems(data: dict[str, Any], expected: list[Problem]) -> None:
    found = problems_of(data)
    assert [(k, p) for k, p, _ in found] == [(k, p) for k, p, _ in expected]
    assert all(f[2].startswith(e[2]) for f, e in zip(found, expected, strict=True))


def test_bad_timezone_falls_back_to_moscow() -> None:
    assert run({"id": "p", "tiers": [TIER0], "timezone": "Mars/Olympus"})[0].timezone == "Europe/Moscow"


# ------------------------------------------------------------------ tiers


@pytest.mark.parametrize(("tiers", "expected"), [
    ([], [("tiers", "no tiers")]),
    ([TIER0, {**TIER0, "min_spent": 10}], [("tiers[1].name", "duplicate tier name 'A'")]),
    ([{"name": "A", "rate_pct": 3, "cap_pct": 10}], [("tiers[0]", "tier has no threshold")]),
    ([{**TIER0, "min_spent": 5}], [("tiers[0]", "the first tier is not reachable by a new customer")]),
    ([TIER0, {"name": "B", "rate_pct": 3, "cap_pct": 10, "min_spent": 0}],
     [("tiers[1].min_spent", "tiers are not in ascending order: 0 after 0 (tiers[0].min_spent)")]),
    ([TIER0, {"name": "B", "rate_pct": 5, "cap_pct": 10, "min_spent": 100},
      {"name": "C", "rate_pct": 7, "cap_pct": 10, "min_spent": 50}],
     [("tiers[2].min_spent", "tiers are not in ascending order: 50 after 100 (tiers[1].min_spent)")]),
    ([{"name": "", "cap_pct": 10, "min_spent": 0, "stars": 3}],
     [("tiers[0].stars", "unknown key"), ("tiers[0].name", "must not be empty"),
      ("tiers[0].rate_pct", "required key is missing")]),
    ([TIER0, 7], [("tiers[1]", "expected a table, got integer 7")]),
    ([{**TIER0, "min_spent": -1}], [("tiers[0].min_spent", "-1 is negative"),
                                    ("tiers[0]", "the first tier is not reachable by a new customer")]),
])
def test_tier_problems(tiers: list[Any], expected: list[tuple[str, str]]) -> None:
    assert [p[:2] for p in problems_of({"tiers": tiers})] == expected


def test_thresholds_of_different_kinds_are_ordered_separately() -> None:
    program, problems = run({"id": "p", "tiers": [
        TIER0, {"name": "B", "rate_pct": 4, "cap_pct": 10, "min_purchases": 1},
        {"name": "C", "rate_pct": 5, "cap_pct": 10, "min_spent": 100, "min_purchases": 5}]})
    assert problems == []
    assert [(t.min_spent, t.min_purchases) for t in program.tiers] == [(0, None), (None, 1), (100, 5)]


def test_first_tier_reachable_by_purchases_or_invites() -> None:
    for key in ("min_purchases", "min_invited"):
        assert run({"id": "p", "tiers": [{"name": "A", "rate_pct": 1, "cap_pct": 1, key: 0}]})[1] == []


# ------------------------------------------------------------------ referral, grants, extra


@pytest.mark.parametrize(("referral", "levels", "expected"), [
    ({"levels_pct": [5, 1, 1]}, (500, 100, 100), []),
    ({}, (), [("referral.levels_pct", "required key is missing")]),
    ({"levels_pct": []}, (), [("referral.levels_pct", "expected a non-empty array of percentages, got []")]),
    ({"levels_pct": 5}, (), [("referral.levels_pct", "expected a non-empty array of percentages, got 5")]),
    ({"levels_pct": [5, "1", 200]}, (500, 0, 0),
     [("referral.levels_pct[1]", "expected a percentage number, got string '1'"),
      ("referral.levels_pct[2]", "200 % is above 100 %")]),
    ({"levels_pct": [5], "bonus": 1}, (500,), [("referral.bonus", "unknown key")]),
])
def test_referral(referral: dict[str, Any], levels: tuple[int, ...], expected: list[tuple[str, str]]) -> None:
    program, problems = run({"id": "p", "tiers": [TIER0], "referral": referral})
    assert program.referral is not None and program.referral.levels_bp == levels
    assert [p[:2] for p in problems] == expected


def test_grants() -> None:
    program, problems = run({"id": "p", "tiers": [TIER0], "grants": [
        {"kind": "review", "points": 100}, {"kind": "lottery", "points": 5}, {"points": 1, "colour": "x"}]})
    assert program.grants == (
        GrantRule("review", points=100), GrantRule("", points=5), GrantRule("", points=1))
    assert [p[:2] for p in problems] == [
        ("grants[1].kind", f"'lottery' is not one of {', '.join(GRANT_KINDS)}"),
        ("grants[2].colour", "unknown key"),
        ("grants[2].kind", "required key is missing"),
    ]


def test_extra_keeps_only_well_typed_informational_keys() -> None:
    program, problems = run({"id": "p", "tiers": [TIER0], "name": 5, "offline_stores": 3,
                             "staff_report": "yes", "profile_fields": ["birthday"], "rfm_monthly": True})
    assert dict(program.extra) == {"offline_stores": 3, "profile_fields": ("birthday",), "rfm_monthly": True}
    assert [p[0] for p in problems] == ["name", "staff_report"]


def test_freeze_extra_sorts_keys_and_turns_lists_into_tuples() -> None:
    frozen = freeze_extra({"z": [1, 2], "a": "x", "m": (3,)})
    assert list(frozen) == ["a", "m", "z"]
    assert dict(frozen) == {"a": "x", "m": (3,), "z": (1, 2)}
    assert type(frozen) is dict  # picklable, deep-copyable
