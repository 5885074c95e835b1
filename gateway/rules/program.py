"""Program configuration: the typed, validated form of ``config/programs/*.toml``.

Owns the schema of a program file (every key, its type, default and meaning), loading and
validation (every problem a :class:`ProgramError` naming file, key path, problem and fix),
and the canonical JSON form used to ship a program to the gateway's offline policy and to
version it (``program_version`` = sha256 of ``program_to_json``).

Invariants: percentages are stored as integer basis points (``rate_pct = 2.5`` -> 250),
money as integer minor units; tiers are sorted by their thresholds; a Program is immutable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.errors import ConfigError


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


class ProgramError(ConfigError):
    """A problem in a program file: ``file``, ``key`` (path such as ``tiers[2].cap_pct``),
    ``problem`` and ``fix``."""


def load_program(path: str | Path) -> Program:
    raise NotImplementedError


def program_from_mapping(data: Mapping[str, Any], source: str) -> Program:
    raise NotImplementedError


def check_program(path: str | Path) -> list[ProgramError]:
    raise NotImplementedError


def program_to_json(p: Program) -> str:
    raise NotImplementedError


def program_from_json(text: str) -> Program:
    raise NotImplementedError


def program_version(p: Program) -> str:
    raise NotImplementedError
