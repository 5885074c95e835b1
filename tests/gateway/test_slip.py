"""gateway.slip: one slip text for every driver; identifiers masked to the last four characters."""

from __future__ import annotations

import pytest

from gateway.driver import CalcLine, CalcResult
from gateway.receipt import CustomerId, IdKind
from gateway.slip import mask, slip_text


def result(**kw: object) -> CalcResult:
    base: dict[str, object] = dict(lines=(CalcLine("l1", 500, 9500, True),), redeemed_points=50,
                                   points_to_accrue=12, max_points=100, payable=9500, offline=False,
                                   customer_found=True, balance=950)
    return CalcResult(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "shown"), [
    ("+79161234567", "*4567"), ("2000012345", "*2345"), ("qr:" + "x" * 200 + "WXYZ", "*WXYZ"),
    ("1234", "*"), ("", "*"),
])
def test_mask_keeps_only_the_last_four(value: str, shown: str) -> None:
    assert mask(value) == shown


@pytest.mark.parametrize("kind", list(IdKind))
def test_no_identifier_is_printed_whole(kind: IdKind) -> None:
    value = "+79161234567" if kind is IdKind.PHONE else "SECRET-PAYLOAD-98765"
    text = slip_text(CustomerId(kind, value), result(), print_balance=True)
    assert value not in text and value[-4:] in text


def test_online_slip() -> None:
    text = slip_text(CustomerId(IdKind.CARD, "2000012345"), result(message="Уровень: золото"),
                     print_balance=True)
    assert text == "Карта *2345\nСписано баллов: 50\nНачислено баллов: 12\nБаланс: 950\nУровень: золото"


def test_offline_slip_marks_accrual_provisional_and_balance_pending() -> None:
    text = slip_text(CustomerId(IdKind.CARD, "2000012345"), result(offline=True, balance=950),
                     print_balance=True)
    assert "Будет начислено баллов: 12" in text and "Баланс: обновится позже" in text and "950" not in text


def test_balance_can_be_left_off_and_unknown_customers_print_only_the_message() -> None:
    card = CustomerId(IdKind.CARD, "2000012345")
    assert "Баланс" not in slip_text(card, result(), print_balance=False)
    assert slip_text(card, result(customer_found=False, message="Покупатель не найден"),
                     print_balance=True) == "Покупатель не найден"
    assert slip_text(None, result(message=""), print_balance=True) == ""
