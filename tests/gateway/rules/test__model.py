"""gateway.rules._model: the program's frozen data model, its defaults (those of the schema in
_parse) and the lookups tier(name), lowest_tier and tz."""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo

import pytest

from gateway.rules._model import GrantRule, Program, Referral, Tier
from gateway.rules._parse import parse
from gateway.rules._schema import Collector

TIERS = (Tier("A", 300, 1000, min_spent=0), Tier("B", 500, 1500, min_spent=3_000_000),
         Tier("C", 700, 2000, min_purchases=10))


def test_defaults_match_a_minimal_program_file() -> None:
    """A Program built with only id and tiers equals what the parser makes of a minimal file:
    the model's defaults and the schema's defaults are the same."""
    c = Collector()
    parsed = parse({"id": "p", "tiers": [{"name": "A", "rate_pct": 3, "cap_pct": 10, "min_spent": 0}]}, c)
    assert c.problems == []
    assert parsed == Program(id="p", tiers=(Tier("A", 300, 1000, min_spent=0),))


def test_defaults() -> None:
    p = Program(id="p")
    assert (p.currency, p.pv, p.timezone, p.policy) == ("RUB", 100, "Europe/Moscow", "cashback")
    assert (p.expiry_days, p.defer_days, p.welcome_points, p.hold_ttl_s, p.cashier_award_points) == (0,) * 5
    assert (p.allow_negative_balance, p.tier_demotion, p.goods_for_points) == (False, False, False)
    assert p.identify == ("app_code", "phone") and p.redeem_with == ("app_code", "phone_otp")
    assert (p.tiers, p.referral, p.grants, dict(p.extra)) == ((), None, (), {})
    assert p.no_redeem_skus == p.no_accrue_categories == frozenset()
    assert (p.reference_discount_bp, p.line_floor_bp, p.sms_price, p.extra_receipt_price) == (0, 0, 0, 0)
    assert GrantRule("birthday") == GrantRule("birthday", 0, 0, 0, 0, 0, "", "")
    assert Referral((500,)).invite_bonus_points == 0
    assert (Tier("A", 1, 2).min_spent, Tier("A", 1, 2).min_purchases, Tier("A", 1, 2).min_invited) == (
        None, None, None)


def test_tier_by_name_and_lowest() -> None:
    p = Program(id="p", tiers=TIERS)
    assert p.tier("B") is TIERS[1]
    assert p.tier("C").min_purchases == 10
    assert p.lowest_tier is TIERS[0]
    with pytest.raises(KeyError, match="'Z'"):
        p.tier("Z")
    with pytest.raises(KeyError):
        p.tier("a")  # names are exact


def test_lowest_tier_of_a_program_without_tiers() -> None:
    with pytest.raises(IndexError):
        _ = Program(id="p").lowest_tier


def test_tz_is_the_zone_of_the_timezone_name() -> None:
    assert Program(id="p").tz == ZoneInfo("Europe/Moscow")
    assert Program(id="p", timezone="Asia/Almaty").tz == ZoneInfo("Asia/Almaty")


@pytest.mark.parametrize(("obj", "attr"), [
    (Program(id="p"), "id"), (Tier("A", 1, 2), "rate_bp"), (Referral((1,)), "levels_bp"),
    (GrantRule("review"), "points"),
])
def test_frozen(obj: object, attr: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, attr, 5)


def test_programs_compare_and_hash_by_value() -> None:
    a = Program(id="p", tiers=TIERS, no_redeem_skus=frozenset({"x"}))
    b = Program(id="p", tiers=TIERS, no_redeem_skus=frozenset({"x"}))
    assert a == b and a != dataclasses.replace(b, pv=50)
    assert hash(TIERS[0]) == hash(Tier("A", 300, 1000, min_spent=0))
