"""drivers.serial.mapping: what the display says for each gateway answer."""

from __future__ import annotations

import pytest

from drivers.serial import mapping
from gateway.driver import CalcLine, CalcResult, CustomerInfo


def result(discount: int = 0, accrue: int = 0, *, offline: bool = False, found: bool = True,
           balance: int | None = 1340, customer_id: str = "c1", message: str = "") -> CalcResult:
    return CalcResult(lines=(CalcLine("1", discount, 10_000 - discount, True),), redeemed_points=0,
                      points_to_accrue=accrue, max_points=0, payable=10_000 - discount, offline=offline,
                      customer_found=found, customer_id=customer_id, balance=balance, message=message)


@pytest.mark.parametrize(("n", "text"), [(0, "0"), (999, "999"), (1340, "1 340"), (1234567, "1 234 567")])
def test_points(n: int, text: str) -> None:
    assert mapping.points(n) == text


@pytest.mark.parametrize(("kop", "text"), [
    (6250, "62.50"), (5, "0.05"), (134000, "1 340.00"), (-150, "-1.50")])
def test_money(kop: int, text: str) -> None:
    assert mapping.money(kop) == text


def test_scanned_online_offline_and_unnamed() -> None:
    anna = CustomerInfo("c1", "Анна Кузнецова", "base", 1340, offline=False)
    assert mapping.scanned(anna, offline=False) == ("Здравствуйте, Анна!", "Баланс: 1 340 б.")
    offline = CustomerInfo("c1", "Анна К.", "base", None, offline=True)
    assert mapping.scanned(offline, offline=True) == ("Карта принята", "Баланс недоступен")
    assert mapping.scanned(None, offline=True) == ("Карта принята", "Баланс недоступен")
    nameless = CustomerInfo("c1", "", "base", 10, offline=False)
    assert mapping.scanned(nameless, offline=False) == ("Здравствуйте!", "Баланс: 10 б.")


def test_calculated() -> None:
    assert mapping.calculated(result(6250, 25)) == ("Скидка 62.50 +25 б.", "Баланс: 1 340 б.")
    assert mapping.calculated(result(6250)) == ("Скидка 62.50 ₽", "Баланс: 1 340 б.")
    assert mapping.calculated(result(0, 25)) == ("Начислим +25 б.", "Баланс: 1 340 б.")
    assert mapping.calculated(result(0, 0)) == ("Начислим 0 б.", "Баланс: 1 340 б.")
    assert mapping.calculated(result(500, 5, offline=True, balance=None)) == (
        "Скидка 5.00 +5 б.", "Баланс недоступен")
    # offline answers say "unavailable" even if a balance came along
    assert mapping.calculated(result(0, 5, offline=True, balance=7))[1] == "Баланс недоступен"


def test_calculated_without_a_customer_keeps_the_screen_unknown_says_so() -> None:
    assert mapping.calculated(result(found=False, customer_id="", balance=None)) is None
    unknown = result(found=False, customer_id="", balance=None, message="Покупатель не найден")
    assert mapping.calculated(unknown) == mapping.NOT_FOUND
