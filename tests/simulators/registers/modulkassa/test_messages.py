"""simulators.registers.modulkassa.messages: the flat Bundle, impact validation and split lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulators.registers.modulkassa.messages import (
    AnswerError,
    MkPosition,
    apply_impacts,
    check_json,
    request_body,
)

FIXTURES = Path(__file__).resolve().parents[4] / "simulators" / "registers" / "modulkassa" / "fixtures"
P1 = MkPosition("p1", "CF-03", "4600000000031", "Americano", False, 10000, 3000)
P2 = MkPosition("p2", "CH-11", "", "Cheese", True, 64000, 350)


def answer() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "loyalty_answer.json").read_text(encoding="utf-8"))
    return data


def test_request_is_a_flat_bundle_of_strings() -> None:
    data = request_body("chk-1", "rp-1", "u-1", (P1, P2), {"phone": "+79160000000"})["data"]
    assert data["positions"] == ["p1", "p2"]
    assert data["position/p1/price"] == "100.00" and data["position/p1/quantity"] == "3"
    assert data["position/p2/measure"] == "KG" and data["position/p2/quantity"] == "0.350"


def test_split_impacts_become_check_lines_that_add_up() -> None:
    lines, blob = apply_impacts((P1, P2), answer())
    assert [(ln.position.position_id, ln.qty_milli, ln.amount, ln.discount) for ln in lines] == [
        ("p1", 2000, 19334, 666),
        ("p1", 1000, 9666, 334),
        ("p2", 350, 21280, 1120),
    ]
    assert json.loads(blob)["calc"] == "h-0002"
    check = json.loads(
        check_json(
            "chk-1",
            "SALE",
            lines,
            number=5,
            shift=2,
            point="rp-1",
            user="u-1",
            date="2026-01-10T12:31:05+03:00",
            payment="CARD",
        )
    )
    assert check["moneyPositions"][0]["sum"] == pytest.approx(502.80)
    assert check["inventPositions"][1]["discountAmount"] == pytest.approx(3.34)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("impact/i2/quantity", "2", "do not add up"),
        ("impact/i1/price", "-1", "negative"),
        ("impact/i3/position_id", "p9", "unknown position"),
        ("impact/i1/quantity", "1.5", "fraction"),
        ("printable_data", " ", "blank"),
    ],
)
def test_answers_breaking_the_sdk_rules_are_refused(key: str, value: str, problem: str) -> None:
    data = answer()
    data["data"][key] = value
    with pytest.raises(AnswerError, match=problem):
        apply_impacts((P1, P2), data)


def test_duplicate_impact_ids_are_refused() -> None:
    data = answer()
    data["data"]["impacts"] = ["i1", "i1", "i3"]
    with pytest.raises(AnswerError, match="unique"):
        apply_impacts((P1, P2), data)
