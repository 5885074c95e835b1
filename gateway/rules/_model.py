"""The program's data model: frozen dataclasses, percentages in basis points, money in minor units.

Re-exported by ``gateway.rules.program`` (the public import path); kept apart so the parser
(``_parse``) and the public module do not import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    rate_bp: int
    cap_bp: int
    min_spent: int | None = None
    min_purchases: int | None = None
    min_invited: int | None = None


@dataclass(frozen=True, slots=True)
class Referral:
    levels_bp: tuple[int, ...]
    invite_bonus_points: int = 0


@dataclass(frozen=True, slots=True)
class GrantRule:
    kind: str
    points: int = 0
    valid_days: int = 0
    cap_bp: int = 0
    after_days: int = 0
    days_before: int = 0
    platform: str = ""
    mode: str = ""


@dataclass(frozen=True)
class Program:
    id: str
    currency: str = "RUB"
    pv: int = 100
    timezone: str = "Europe/Moscow"
    policy: str = "cashback"
    expiry_days: int = 0
    defer_days: int = 0
    allow_negative_balance: bool = False
    tier_demotion: bool = False
    welcome_points: int = 0
    identify: tuple[str, ...] = ("app_code", "phone")
    redeem_with: tuple[str, ...] = ("app_code", "phone_otp")
    tiers: tuple[Tier, ...] = ()
    referral: Referral | None = None
    grants: tuple[GrantRule, ...] = ()
    goods_for_points: bool = False
    no_redeem_skus: frozenset[str] = frozenset()
    no_redeem_categories: frozenset[str] = frozenset()
    no_accrue_skus: frozenset[str] = frozenset()
    no_accrue_categories: frozenset[str] = frozenset()
    reference_discount_bp: int = 0
    included_receipts_per_month: int = 0
    extra_receipt_price: int = 0
    sms_price: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    line_floor_bp: int = 0
    hold_ttl_s: int = 0
    cashier_award_points: int = 0

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def lowest_tier(self) -> Tier:
        return self.tiers[0]
