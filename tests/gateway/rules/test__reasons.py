"""gateway.rules._reasons: applied-rule records, stable rule ids, Russian reasons with money as
«1 234,56», percentages from basis points and the plural of «балл»."""

from __future__ import annotations

import pytest

from gateway.rules import _reasons as r
from gateway.rules.program import Tier
from gateway.rules.types import AppliedRule

CHEF = Tier("Шеф", rate_bp=400, cap_bp=2500, min_spent=0)


def test_accrual() -> None:
    assert r.accrual(CHEF, 123456, 49) == AppliedRule(
        "tier_accrual", 49, "Статус «Шеф» 4 % от 1 234,56 → 49 баллов")
    assert r.accrual(Tier("Base", 250, 0), 100, 1).reason == "Статус «Base» 2,5 % от 1,00 → 1 балл"


def test_instant_discount_is_money() -> None:
    assert r.instant(CHEF, 123456, 4938) == AppliedRule(
        "instant_discount", 4938, "Скидка статуса «Шеф» 4 % от 1 234,56 → 49,38")


@pytest.mark.parametrize(("certificate", "points", "pv", "expected"), [
    (True, 300, 100, AppliedRule("redeem_certificate", 300, "Оплачено сертификатом: 300 баллов = 300,00")),
    (False, 1, 50, AppliedRule("redeem_points", 1, "Оплачено баллами: 1 балл = 0,50")),
    (False, 22, 100, AppliedRule("redeem_points", 22, "Оплачено баллами: 22 балла = 22,00")),
    (False, 1001, 1, AppliedRule("redeem_points", 1001, "Оплачено баллами: 1 001 балл = 10,01")),
])
def test_redeemed(certificate: bool, points: int, pv: int, expected: AppliedRule) -> None:
    assert r.redeemed(certificate, points, pv) == expected


def test_goods_and_exclusions_name_the_line() -> None:
    assert r.goods("L1", 21) == AppliedRule("goods_for_points", 21, "Товар за баллы, строка L1: 21 балл")
    assert r.excluded("7", 500, redeem=True) == AppliedRule(
        "no_redeem", 500, "Строка 7 не оплачивается баллами по правилам программы")
    assert r.excluded("7", 500, redeem=False) == AppliedRule(
        "no_accrue", 500, "Строка 7 не даёт баллов по правилам программы")


HEAD = "Можно списать до 1 234 балла"


@pytest.mark.parametrize(("limited_by", "method", "reason"), [
    ("identification", None, "Списание недоступно: клиент не опознан"),
    ("identification", "phone", "Списание недоступно: способ опознания «phone» позволяет только начислять"),
    ("balance", None, f"{HEAD}: столько доступно на счёте"),
    ("tier_cap", None, f"{HEAD}: лимит статуса «Шеф» 25 % от 1 000,00"),
    ("certificate_cap", None, f"{HEAD}: лимит сертификата 30,5 % от 1 000,00"),
    ("combined_cap", None, f"{HEAD}: общий лимит 30,5 % от 1 000,00"),  # the larger of the two caps
    ("line_floor", None, f"{HEAD}: минимальные цены строк"),
    ("none", None, "Списание недоступно: в чеке нет строк, которые можно оплатить баллами"),
])
def test_limit_reason_per_limited_by(limited_by: str, method: str | None, reason: str) -> None:
    rule = r.limit(limited_by, 1234, tier=CHEF, base=100000, cert_cap_bp=3050, method=method)
    assert rule == AppliedRule("redemption_limit", 1234, reason)


def test_combined_cap_names_the_tier_cap_when_it_is_larger() -> None:
    rule = r.limit("combined_cap", 5, tier=CHEF, base=-150, cert_cap_bp=1000, method=None)
    assert rule.reason == "Можно списать до 5 баллов: общий лимит 25 % от -1,50"
