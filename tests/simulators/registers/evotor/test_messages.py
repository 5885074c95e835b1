"""simulators.registers.evotor.messages: plugin bodies, and answers applied as the terminal does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulators.registers.evotor.messages import AnswerError, Device, EvReceipt, Position, apply_answer

FIXTURES = Path(__file__).resolve().parents[4] / "simulators" / "registers" / "evotor" / "fixtures"
DEV = Device("20240713-774A-4038-8037-E66BF3AA7552", "dev-1", "01-000000000000001")
P1 = Position(
    "0b8e6a52-7c1d-4f3e-9a21-3d5c7e9f1a01", "prod-1", "101", "Cappuccino", False, 18000, 18000, 2000
)
P2 = Position("0b8e6a52-7c1d-4f3e-9a21-3d5c7e9f1a02", None, None, "Cheese", True, 90000, 90000, 245)
RECEIPT = EvReceipt(
    "9d3c1e2a-6b7f-4c11-a0d2-5e8f9a1b2c3d", DEV, "7", (P1, P2), loyalty={"phone": "+79160000000"}
)


def answer() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "calc_answer.json").read_text(encoding="utf-8"))
    return data


def test_calc_body_uses_sdk_shapes() -> None:
    body = RECEIPT.calc_body()
    assert body["action"] == "evo.v2.receipt.sell.receiptDiscount"
    header = body["receipt"]["header"]
    assert header["number"] is None and header["date"] is None and header["type"] == "SELL"
    pos = body["receipt"]["printDocuments"][0]["positions"]
    assert pos[0]["price"] == "180.00" and pos[0]["quantity"] == "2" and pos[0]["measurePrecision"] == 0
    assert pos[1]["productUuid"] is None and pos[1]["quantity"] == "0.245" and pos[1]["measurePrecision"] == 3


def test_the_map_is_applied_and_the_receipt_adds_up() -> None:
    applied = apply_answer(RECEIPT, answer())
    assert applied.discount == 8600 and applied.shares == {P1.uuid: 3600, P2.uuid: 5000}
    closed = RECEIPT.closed("12", "2026-01-01T10:00:00.000+03:00").close_body(applied)
    doc = closed["receipt"]["printDocuments"][0]
    assert doc["discounts"] == {P1.uuid: "36.00", P2.uuid: "50.00"}
    assert doc["payments"][0]["value"] == "494.50"  # 360.00 + 220.50 - 86.00
    assert json.loads(closed["receipt"]["header"]["extra"])["lg"]["calc"] == "h-0001"


def test_without_a_map_the_discount_is_spread_pro_rata() -> None:
    data = answer()
    del data["result"]["positionUuidToDiscountMap"]
    applied = apply_answer(RECEIPT, data)
    assert sum(applied.shares.values()) == 8600 and applied.shares[P1.uuid] > applied.shares[P2.uuid]


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("result", "positionUuidToDiscountMap", P1.uuid), "37.00", "adds up"),
        (("result", "positionUuidToDiscountMap", P1.uuid), "-1.00", "negative"),
        (("result", "discount"), "1000.00", "adds up"),
        (("callback",), "onError", "onError"),
    ],
)
def test_inconsistent_answers_are_refused(path: tuple[str, ...], value: str, problem: str) -> None:
    data = answer()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(AnswerError, match=problem):
        apply_answer(RECEIPT, data)


def test_a_discount_larger_than_a_line_is_refused() -> None:
    data = answer()
    data["result"].update(discount="400.00", positionUuidToDiscountMap={P1.uuid: "400.00", P2.uuid: "0.00"})
    with pytest.raises(AnswerError, match="negative sum"):
        apply_answer(RECEIPT, data)


def test_skip_changes_nothing() -> None:
    applied = apply_answer(RECEIPT, {"callback": "skip"})
    assert applied.skipped and applied.discount == 0 and RECEIPT.payable(applied) == RECEIPT.gross
