"""drivers.native.mapping: canonical results -> exact native JSON answers."""

from __future__ import annotations

from drivers.native import mapping
from gateway.driver import CalcLine, CalcResult, CustomerInfo


def result(**kw: object) -> CalcResult:
    base: dict[str, object] = dict(
        lines=(CalcLine("1", 500, 9500, True), CalcLine("2", 0, 5000, False)), redeemed_points=500,
        points_to_accrue=95, max_points=700, payable=14500, offline=False, customer_found=True,
        customer_id="cus-1", display_name="Anna K.", tier="silver", balance=1200, hold_id="h1",
        message="Spent 500 points", rejection="", token="c1.tok.mac",
    )
    base.update(kw)
    return CalcResult(**base)  # type: ignore[arg-type]


def test_online_answer() -> None:
    assert mapping.calc_to_json(result()) == {
        "lines": [{"line_id": "1", "discount": 500, "paid": 9500},
                  {"line_id": "2", "discount": 0, "paid": 5000}],
        "redeemed_points": 500, "points_to_accrue": 95, "max_points": 700, "payable": 14500,
        "offline": False,
        "customer": {"customer_id": "cus-1", "display_name": "Anna K.", "tier": "silver", "balance": 1200},
        "hold_id": "h1", "message": "Spent 500 points", "rejection": "", "calc_token": "c1.tok.mac",
    }


def test_offline_answer_has_null_balance_and_unknown_customer_is_null() -> None:
    offline = mapping.calc_to_json(result(offline=True, balance=None, rejection="OFFLINE_LIMIT"))
    assert offline["offline"] is True and offline["customer"]["balance"] is None
    assert offline["rejection"] == "OFFLINE_LIMIT"
    assert mapping.calc_to_json(result(customer_found=False))["customer"] is None


def test_identify_found_and_not_found() -> None:
    info = CustomerInfo("cus-1", "Anna K.", "gold", None, True)
    assert mapping.identify_to_json(info) == {
        "found": True, "customer_id": "cus-1", "display_name": "Anna K.", "tier": "gold", "balance": None,
        "offline": True,
    }
    assert mapping.identify_to_json(None) == {"found": False, "customer_id": "", "display_name": "",
                                              "tier": "", "balance": None, "offline": False}


def test_ack_and_error() -> None:
    assert mapping.ack_to_json("k", True) == {"key": "k", "duplicate": False}
    assert mapping.ack_to_json("k", False) == {"key": "k", "duplicate": True}
    assert mapping.error_to_json("BAD_REQUEST", "is required", "lines[0].sku") == {
        "error": {"code": "BAD_REQUEST", "message": "is required", "field": "lines[0].sku"}}
    assert mapping.error_to_json("UNAUTHORIZED", "no") == {"error": {"code": "UNAUTHORIZED", "message": "no"}}
