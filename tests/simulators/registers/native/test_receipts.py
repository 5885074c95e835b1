"""Pure parts: the catalogue's lines, request bodies, and the consistency check of answers."""

from __future__ import annotations

import random
from typing import Any

import pytest

from simulators.registers.native.catalog import CATALOG, SimLine, line_gross, ring_up
from simulators.registers.native.receipts import AnswerError, TillReceipt, apply_answer

MILK = next(p for p in CATALOG if p.sku == "4600001")  # 89.90, discountable
CIGS = next(p for p in CATALOG if p.category == "tobacco")  # not discountable
WINE = next(p for p in CATALOG if p.min_unit_price)  # 799.00, min 349.00


def receipt(*lines: SimLine, customer: dict[str, str] | None = None) -> TillReceipt:
    return TillReceipt("till-01", "7", "42", lines, "2026-03-01T10:00:00+03:00", customer=customer)


R = receipt(SimLine("1", MILK, 2000, 17980), SimLine("2", CIGS, 1000, 21500), SimLine("3", WINE, 1000, 79900))


def answer(*lines: tuple[str, int, int], **extra: Any) -> dict[str, Any]:
    body = [{"line_id": i, "discount": d, "paid": p} for i, d, p in lines]
    return {"lines": body, "redeemed_points": 5, "points_to_accrue": 1, "offline": False,
            "payable": sum(p for _, _, p in lines), "hold_id": "h1", **extra}


def test_line_gross_rounds_half_up_in_integers() -> None:
    assert line_gross(13990, 1234) == 17264  # 172.6366 -> 172.64
    assert line_gross(1, 500) == 1 and line_gross(1, 499) == 0


@pytest.mark.parametrize("seed", range(30))
def test_ring_up_invariants(seed: int) -> None:
    for line in ring_up(random.Random(seed)):
        p = line.product
        assert isinstance(line.amount, int) and 0 <= line.amount <= line.gross
        assert line.gross == line_gross(p.price, line.qty_milli)
        if not p.weighted:
            assert line.qty_milli % 1000 == 0
        if line.amount != line.gross:
            assert p.discountable and p.min_unit_price is None
    assert ring_up(random.Random(seed)) == ring_up(random.Random(seed))


def test_good_answer_is_applied() -> None:
    applied = apply_answer(R, answer(("1", 500, 17480), ("2", 0, 21500), ("3", 1000, 78900)))
    assert (applied.redeemed_points, applied.payable, applied.hold_id) == (5, 117880, "h1")
    assert applied.discounts == {"1": 500, "2": 0, "3": 1000}


@pytest.mark.parametrize(
    ("lines", "extra", "problem"),
    [
        ((("1", 500, 17480), ("2", 0, 21500)), {}, "lines not answered: 3"),
        ((("1", 500, 17480), ("2", 0, 21500), ("3", 0, 79900), ("9", 0, 0)), {}, "unknown line_id"),
        ((("1", -5, 17985), ("2", 0, 21500), ("3", 0, 79900)), {}, "negative discount"),
        ((("1", 18000, -20), ("2", 0, 21500), ("3", 0, 79900)), {}, "discount 18000 > amount 17980"),
        ((("1", 500, 17000), ("2", 0, 21500), ("3", 0, 79900)), {}, "paid 17000 != amount"),
        ((("1", 0, 17980), ("2", 100, 21400), ("3", 0, 79900)), {}, "non-discountable"),
        ((("1", 0, 17980), ("2", 0, 21500), ("3", 50000, 29900)), {}, "under the minimum price"),
        ((("1", 0, 17980), ("2", 0, 21500), ("3", 0, 79900)), {"payable": 1}, "payable 1 != sum of paid"),
        ((("1", 0, 17980), ("2", 0, 21500), ("3", 0, 79900)), {"redeemed_points": 1.5}, "redeemed_points"),
        ((("1", 0, 17980), ("2", 0, 21500), ("3", 0, 79900)), {"offline": "no"}, "offline"),
        ((("1", 0, 17980), ("1", 0, 17980), ("2", 0, 21500), ("3", 0, 79900)), {}, "answered twice"),
    ],
)
def test_inconsistent_answers_are_refused(lines: Any, extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(AnswerError, match=problem):
        apply_answer(R, answer(*lines, **extra))


def test_answer_without_lines_is_refused() -> None:
    with pytest.raises(AnswerError, match="no lines"):
        apply_answer(R, {"error": "x"})


def test_bodies() -> None:
    r = receipt(SimLine("1", MILK, 1000, 8990), customer={"phone": "+79123456789"})
    calc = r.calc_body()
    assert calc["lines"][0] == {"line_id": "1", "sku": "4600001", "name": MILK.name, "category": "dairy",
                                "price": 8990, "qty_milli": 1000, "amount": 8990, "discountable": True,
                                "accruable": True}
    assert calc["customer"] == {"phone": "+79123456789"} and "redeem_max" not in calc
    sale = r.sale_body(apply_answer(r, answer(("1", 100, 8890))), payment_kind="cash")
    assert sale["redeemed_points"] == 5 and sale["hold_id"] == "h1"
    assert sale["payments"] == [{"kind": "cash", "amount": 8890}]
    assert sale["fiscal_sign"] == r.fiscal_sign and len(r.fiscal_sign) == 10
    assert r.sale_ref() == {"receipt_number": "42", "shift": "7", "fiscal_sign": r.fiscal_sign}
    refund = r.refund_body("x/r1", {"1": 1000}, "2026-03-01T11:00:00+03:00")
    assert refund["lines"] == [{"line_id": "1", "qty_milli": 1000}] and "full" not in refund
    assert r.refund_body("x/r2", None, "2026-03-01T11:00:00+03:00")["full"] is True
    assert r.cancel_body("x/c") == {"register_id": "till-01", "cancel_id": "x/c", "sale": r.sale_ref()}
