"""Program file schema and parser: TOML mapping -> Program plus a list of problems.

Private to ``gateway.rules.program``. The parser never raises: it collects every problem
(key path, problem, fix) so ``check_program`` can report them all at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.rules._model import GrantRule, Program, Referral, Tier
from gateway.rules._schema import Collector, join

# ---------------------------------------------------------------------------------------------
# The schema. Every key a program file may hold; anything else is an error.
#
# Top level (defaults in brackets):
#   id                      str, required: program id, e.g. "seed002"
#   currency                str ["RUB"]: ISO 4217 code of the minor units used below
#   point_value_minor       int > 0 [100]: pv, the value of one point in minor units
#   timezone                str ["Europe/Moscow"]: IANA zone; days (expiry, birthdays) follow it
#   policy                  "cashback" | "discount" ["cashback"]: discount = instant ⌊B_r·rate⌋, no accrual
#   expiry_days             int >= 0 [0]: lots expire at 00:00 local on accrual date + N days; 0 = never
#   defer_days              int >= 0 [0]: accrued points become spendable at 00:00 local + N days
#   allow_negative_balance  bool [false]: clawbacks may drive the balance below zero (else: debt)
#   tier_demotion           bool [false]: tiers may drop when thresholds are no longer met
#   welcome_points          int >= 0 [0]: lot granted at registration, once per phone
#   identify                [method] ["app_code", "phone"]: accepted identification methods
#   redeem_with             [method] ["app_code", "phone_otp"]: methods strong enough to redeem
#   tiers                   [table], required, ascending: {name, rate_pct, cap_pct,
#                           min_spent | min_purchases | min_invited}; tiers[0] must be reachable (0)
#   referral                table: {levels_pct = [pct per level], invite_bonus_points = int}
#   grants                  [table]: {kind, points, valid_days, cap_pct, after_days, days_before,
#                           platform, mode}; kind in birthday|winback|review|partner|special_date|manual
#   goods_for_points        bool [false]: lines with point_price > 0 are paid in points
#   no_redeem_skus, no_redeem_categories   [str] []: lines points cannot pay for
#   no_accrue_skus, no_accrue_categories   [str] []: lines that earn nothing
#   line_floor_pct          pct [0]: each line keeps at least this share of its amount in money
#   reference_discount_pct  pct [0]: the direct discount reports compare against (§4)
#   included_receipts_per_month  int [0]; extra_receipt_price, sms_price  money [0] (usage report)
#   hold_ttl_s              int >= 0 [0]: Calculate reserves redeemed points for this long
#   cashier_award_points    int >= 0 [0]: points credited to the enrolling cashier (optional)
# Informational (kept in Program.extra, typed, not used by the rule engine):
#   name str; offline_stores int; online_store bool; staff_report bool; rfm_monthly bool;
#   verify_phone_by_sms bool; staff_kpi, notify, self_registration, profile_fields [str]
# Percentages may be decimals (2.5) and are stored as basis points (250).
# ---------------------------------------------------------------------------------------------

METHODS = ("app_code", "phone", "phone_otp", "card", "qr_payload", "customer_id")
GRANT_KINDS = ("birthday", "winback", "review", "partner", "special_date", "manual")
THRESHOLDS = ("min_spent", "min_purchases", "min_invited")
_TOP = {
    "id",
    "currency",
    "point_value_minor",
    "timezone",
    "policy",
    "expiry_days",
    "defer_days",
    "allow_negative_balance",
    "tier_demotion",
    "welcome_points",
    "identify",
    "redeem_with",
    "tiers",
    "referral",
    "grants",
    "goods_for_points",
    "no_redeem_skus",
    "no_redeem_categories",
    "no_accrue_skus",
    "no_accrue_categories",
    "line_floor_pct",
    "reference_discount_pct",
    "included_receipts_per_month",
    "extra_receipt_price",
    "sms_price",
    "hold_ttl_s",
    "cashier_award_points",
}
_INFO = {
    "name": "str",
    "offline_stores": "int",
    "online_store": "bool",
    "staff_report": "bool",
    "rfm_monthly": "bool",
    "verify_phone_by_sms": "bool",
    "staff_kpi": "list",
    "notify": "list",
    "self_registration": "list",
    "profile_fields": "list",
}
_TIER = {"name", "rate_pct", "cap_pct", *THRESHOLDS}
_REFERRAL = {"levels_pct", "invite_bonus_points"}
_GRANT = {"kind", "points", "valid_days", "cap_pct", "after_days", "days_before", "platform", "mode"}


def freeze_extra(extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """Informational keys, lists as tuples. A plain dict (typed read-only as Mapping) so that
    Programs stay picklable and work with ``dataclasses.asdict`` / ``copy.deepcopy``."""
    return {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in sorted(extra.items())}


def _parse_tiers(c: Collector, data: Mapping[str, Any]) -> tuple[Tier, ...]:
    if "tiers" not in data:
        c.add(
            "tiers",
            "required key is missing",
            'add tiers = [{ name = "Базовый", rate_pct = 5, cap_pct = 20, min_spent = 0 }]',
        )
        return ()
    entries = c.tables(data, "tiers", "")
    if not entries and isinstance(data["tiers"], list) and not data["tiers"]:
        c.add("tiers", "no tiers", "add at least one tier with min_spent = 0")
    tiers: list[Tier] = []
    last: dict[str, tuple[int, str]] = {}
    names: set[str] = set()
    for path, t in entries:
        c.unknown_keys(t, _TIER, path)
        name = c.str_(t, "name", path, required=True)
        if name and name in names:
            c.add(join(path, "name"), f"duplicate tier name {name!r}", "give every tier its own name")
        names.add(name)
        rate = c.pct(t, "rate_pct", path, required=True)
        cap = c.pct(t, "cap_pct", path, required=True)
        th = {k: c.opt_int(t, k, path) for k in THRESHOLDS}
        if not any(k in t for k in THRESHOLDS):
            c.add(path, "tier has no threshold", "add min_spent, min_purchases or min_invited")
        for k, v in th.items():
            if v is None:
                continue
            if k in last and v <= last[k][0]:
                problem = f"tiers are not in ascending order: {v} after {last[k][0]} ({last[k][1]})"
                c.add(
                    join(path, k),
                    problem,
                    "list tiers from the lowest threshold to the highest, each higher than the one before",
                )
            last[k] = (v, join(path, k))
        tiers.append(Tier(name, rate, cap, th["min_spent"], th["min_purchases"], th["min_invited"]))
    if (
        tiers
        and entries
        and not any(v == 0 for v in (tiers[0].min_spent, tiers[0].min_purchases, tiers[0].min_invited))
    ):
        if any(k in entries[0][1] for k in THRESHOLDS):
            c.add(
                entries[0][0],
                "the first tier is not reachable by a new customer",
                "set min_spent = 0 (or min_purchases = 0) on the first tier",
            )
    return tuple(tiers)


def _parse_referral(c: Collector, data: Mapping[str, Any]) -> Referral | None:
    ref = c.table(data, "referral", "")
    if ref is None:
        return None
    c.unknown_keys(ref, _REFERRAL, "referral")
    levels: list[int] = []
    if "levels_pct" not in ref:
        c.add("referral.levels_pct", "required key is missing", "add levels_pct = [5, 1, 1] (one per level)")
    elif not isinstance(ref["levels_pct"], list) or not ref["levels_pct"]:
        c.add(
            "referral.levels_pct",
            f"expected a non-empty array of percentages, got {ref['levels_pct']!r}",
            "write levels_pct = [5, 1, 1]",
        )
    else:
        for i, v in enumerate(ref["levels_pct"]):
            bp = c.pct_value(v, f"referral.levels_pct[{i}]")
            levels.append(0 if bp is None else bp)
    return Referral(tuple(levels), c.int_(ref, "invite_bonus_points", "referral"))


def _parse_grants(c: Collector, data: Mapping[str, Any]) -> tuple[GrantRule, ...]:
    grants: list[GrantRule] = []
    for path, g in c.tables(data, "grants", ""):
        c.unknown_keys(g, _GRANT, path)
        grants.append(
            GrantRule(
                kind=c.str_(g, "kind", path, required=True, choices=GRANT_KINDS),
                points=c.int_(g, "points", path),
                valid_days=c.int_(g, "valid_days", path),
                cap_bp=c.pct(g, "cap_pct", path),
                after_days=c.int_(g, "after_days", path),
                days_before=c.int_(g, "days_before", path),
                platform=c.str_(g, "platform", path),
                mode=c.str_(g, "mode", path),
            )
        )
    return tuple(grants)


def _parse_extra(c: Collector, data: Mapping[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for key, kind in _INFO.items():
        if key not in data:
            continue
        before = len(c.problems)
        value: Any
        if kind == "str":
            value = c.str_(data, key, "")
        elif kind == "int":
            value = c.int_(data, key, "")
        elif kind == "bool":
            value = c.bool_(data, key, "")
        else:
            value = c.str_list(data, key, "")
        if len(c.problems) == before:
            extra[key] = value
    return extra


def parse(data: Mapping[str, Any], c: Collector) -> Program:
    c.unknown_keys(data, _TOP | set(_INFO), "")
    tz = c.str_(data, "timezone", "", "Europe/Moscow")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        c.add("timezone", f"unknown time zone {tz!r}", 'use an IANA name such as "Europe/Moscow"')
        tz = "Europe/Moscow"
    currency = c.str_(data, "currency", "", "RUB")
    if not (len(currency) == 3 and currency.isascii() and currency.isalpha() and currency.isupper()):
        c.add("currency", f"{currency!r} is not an ISO 4217 code", 'use three capital letters, e.g. "RUB"')
    return Program(
        id=c.str_(data, "id", "", required=True),
        currency=currency,
        pv=c.int_(data, "point_value_minor", "", 100, minimum=1),
        timezone=tz,
        policy=c.str_(data, "policy", "", "cashback", choices=("cashback", "discount")),
        expiry_days=c.int_(data, "expiry_days", ""),
        defer_days=c.int_(data, "defer_days", ""),
        allow_negative_balance=c.bool_(data, "allow_negative_balance", ""),
        tier_demotion=c.bool_(data, "tier_demotion", ""),
        welcome_points=c.int_(data, "welcome_points", ""),
        identify=c.str_list(data, "identify", "", ("app_code", "phone"), choices=METHODS),
        redeem_with=c.str_list(data, "redeem_with", "", ("app_code", "phone_otp"), choices=METHODS),
        tiers=_parse_tiers(c, data),
        referral=_parse_referral(c, data),
        grants=_parse_grants(c, data),
        goods_for_points=c.bool_(data, "goods_for_points", ""),
        no_redeem_skus=frozenset(c.str_list(data, "no_redeem_skus", "")),
        no_redeem_categories=frozenset(c.str_list(data, "no_redeem_categories", "")),
        no_accrue_skus=frozenset(c.str_list(data, "no_accrue_skus", "")),
        no_accrue_categories=frozenset(c.str_list(data, "no_accrue_categories", "")),
        reference_discount_bp=c.pct(data, "reference_discount_pct", ""),
        included_receipts_per_month=c.int_(data, "included_receipts_per_month", ""),
        extra_receipt_price=c.int_(data, "extra_receipt_price", ""),
        sms_price=c.int_(data, "sms_price", ""),
        extra=freeze_extra(_parse_extra(c, data)),
        line_floor_bp=c.pct(data, "line_floor_pct", ""),
        hold_ttl_s=c.int_(data, "hold_ttl_s", ""),
        cashier_award_points=c.int_(data, "cashier_award_points", ""),
    )
