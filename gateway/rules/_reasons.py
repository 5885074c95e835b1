"""Applied-rule records of a calculation, with reasons in Russian (loyalty-rules.md §2.1 Output).

Private to ``gateway.rules.calc``. Rule ids are stable identifiers tills and reports may key
on; reasons are for people («Статус «Шеф» 4 % от 1 234,56 → 49 баллов»).

Rule ids: ``tier_accrual`` (amount: points), ``instant_discount`` (minor units),
``redemption_limit`` (max_points), ``redeem_certificate`` / ``redeem_points`` (points),
``goods_for_points`` (points, per line), ``no_redeem`` / ``no_accrue`` (line amount, lines
excluded by the program's SKU/category lists).
"""

from __future__ import annotations

from gateway.rules.money import fmt_money, fmt_pct, fmt_points
from gateway.rules.program import Tier
from gateway.rules.types import AppliedRule


def accrual(tier: Tier, base: int, points: int) -> AppliedRule:
    reason = f"Статус «{tier.name}» {fmt_pct(tier.rate_bp)} от {fmt_money(base)} → {fmt_points(points)}"
    return AppliedRule("tier_accrual", points, reason)


def instant(tier: Tier, base: int, discount: int) -> AppliedRule:
    reason = (
        f"Скидка статуса «{tier.name}» {fmt_pct(tier.rate_bp)} от {fmt_money(base)} → {fmt_money(discount)}"
    )
    return AppliedRule("instant_discount", discount, reason)


def limit(
    limited_by: str,
    max_points: int,
    *,
    tier: Tier,
    base: int,
    cert_cap_bp: int,
    method: str | None,
) -> AppliedRule:
    head = f"Можно списать до {fmt_points(max_points)}"
    if limited_by == "identification":
        why = (
            "Списание недоступно: клиент не опознан"
            if method is None
            else f"Списание недоступно: способ опознания «{method}» позволяет только начислять"
        )
    elif limited_by == "balance":
        why = f"{head}: столько доступно на счёте"
    elif limited_by == "tier_cap":
        why = f"{head}: лимит статуса «{tier.name}» {fmt_pct(tier.cap_bp)} от {fmt_money(base)}"
    elif limited_by == "certificate_cap":
        why = f"{head}: лимит сертификата {fmt_pct(cert_cap_bp)} от {fmt_money(base)}"
    elif limited_by == "combined_cap":
        why = f"{head}: общий лимит {fmt_pct(max(tier.cap_bp, cert_cap_bp))} от {fmt_money(base)}"
    elif limited_by == "line_floor":
        why = f"{head}: минимальные цены строк"
    else:
        why = "Списание недоступно: в чеке нет строк, которые можно оплатить баллами"
    return AppliedRule("redemption_limit", max_points, why)


def redeemed(certificate: bool, points: int, pv: int) -> AppliedRule:
    what = "сертификатом" if certificate else "баллами"
    rule_id = "redeem_certificate" if certificate else "redeem_points"
    return AppliedRule(rule_id, points, f"Оплачено {what}: {fmt_points(points)} = {fmt_money(points * pv)}")


def goods(line_id: str, points: int) -> AppliedRule:
    return AppliedRule("goods_for_points", points, f"Товар за баллы, строка {line_id}: {fmt_points(points)}")


def excluded(line_id: str, amount: int, *, redeem: bool) -> AppliedRule:
    if redeem:
        return AppliedRule(
            "no_redeem", amount, f"Строка {line_id} не оплачивается баллами по правилам программы"
        )
    return AppliedRule("no_accrue", amount, f"Строка {line_id} не даёт баллов по правилам программы")
