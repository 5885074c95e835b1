"""Phone normalisation and masked names (loyalty-rules.md §1 Customer)."""

from __future__ import annotations

import pytest

from gateway.rules.identity import mask_name, normalize_phone


@pytest.mark.parametrize(
    "typed", ["8 (912) 345-67-89", "+7 912 3456789", "79123456789", "+7 (912) 345 67 89"]
)
def test_every_typed_form_normalises_to_e164(typed: str) -> None:
    assert normalize_phone(typed) == "+79123456789"


def test_other_region() -> None:
    assert normalize_phone("555 12 34 56", region="GE") == "+995555123456"


@pytest.mark.parametrize("typed", ["12345", "", "not a phone", "+7 000"])
def test_invalid_numbers_raise_value_error(typed: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(typed)


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("Анна Кузнецова", "Анна К."),
        ("  Анна   кузнецова ", "Анна К."),
        ("Анна", "Анна"),
        ("", ""),
        ("Иван Петров Сергеевич", "Иван П."),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked
