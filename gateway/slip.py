"""The one slip / cashier-screen text of a calculate, the same for every driver.

Invariants:
- a customer identifier is never printed whole: :func:`mask` keeps the last four characters
  (``*4567``), whatever the kind (phone, card, app code, QR payload);
- a balance is printed only when the core answered online and said it; offline (or unknown)
  prints "обновится позже" rather than a stale figure, and accrual is "Будет начислено";
- a receipt without a recognised customer prints only the calc's message (possibly empty).
Pure.
"""

from __future__ import annotations

from gateway.driver import CalcResult
from gateway.receipt import CustomerId

VISIBLE = 4


def mask(value: str) -> str:
    """``value`` with all but its last four characters hidden: ``*4567`` (``*`` alone when short)."""
    return "*" + (value[-VISIBLE:] if len(value) > VISIBLE else "")


def slip_text(customer: CustomerId | None, result: CalcResult, *, print_balance: bool) -> str:
    """The lines a till prints on the slip (or shows the cashier) for ``result``."""
    if customer is None or not result.customer_found:
        return result.message
    rows = [f"Карта {mask(customer.value)}"]
    if result.redeemed_points:
        rows.append(f"Списано баллов: {result.redeemed_points}")
    if result.points_to_accrue:
        verb = "Будет начислено" if result.offline else "Начислено"
        rows.append(f"{verb} баллов: {result.points_to_accrue}")
    if print_balance:
        shown = "обновится позже" if result.offline or result.balance is None else str(result.balance)
        rows.append(f"Баланс: {shown}")
    if result.message:
        rows.append(result.message)
    return "\n".join(rows)
