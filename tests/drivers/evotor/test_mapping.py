"""Evotor mapping as tables: payload -> receipt -> answer, kopeck-exact; closes -> events."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from drivers.evotor import mapping, wire
from gateway.driver import CalcClaims
from gateway.errors import BadInput
from gateway.receipt import CustomerId, EventKind, IdKind
from tests.drivers.evotor import payloads
from tests.drivers.fake_context import calc_result

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def parsed(payload: dict[str, object]) -> wire.PluginMessage:
    return wire.parse_plugin(payloads.body(payload))


def test_calc_receipt_from_the_protocol_example() -> None:
    receipt = mapping.calc_receipt(parsed(payloads.calc()), now=NOW)
    assert [(ln.line_id, ln.price, ln.qty_milli, ln.amount) for ln in receipt.lines] == [
        (payloads.P1, 18000, 2000, 36000),
        (payloads.P2, 90000, 245, 22050),  # 900.00 x 0.245 = 220.50
    ]
    assert receipt.customer == CustomerId(IdKind.CARD, "2000012345")
    assert receipt.redeem_points == 50 and receipt.document_id == payloads.RECEIPT
    assert receipt.register_id == payloads.STORE and receipt.occurred_at == NOW


@pytest.mark.parametrize(
    ("price", "qty", "amount"),
    [
        ("199.99", "0.333", 6660),  # 66.59667 -> 66.60, half-up
        ("0.01", "0.499", 0),  # 0.00499 -> 0.00
        ("0.01", "0.5", 1),  # 0.005 -> 0.01
        ("100", "1.0005", 10010),  # the quantity rounds to 1.001 first (thousandths): 100.10
    ],
)
def test_kopeck_rounding_of_decimal_prices_and_fractional_quantities(
    price: str, qty: str, amount: int
) -> None:
    pos = [{"uuid": "a", "name": "x", "price": price, "quantity": qty}]
    receipt = mapping.calc_receipt(parsed(payloads.calc(pos=pos)), now=NOW)
    assert receipt.lines[0].amount == amount


def test_answer_is_the_discount_plus_the_exact_per_position_map() -> None:
    msg = parsed(payloads.calc())
    receipt = mapping.calc_receipt(msg, now=NOW)
    result = calc_result(
        receipt,
        {payloads.P1: 3600, payloads.P2: 5000},
        redeemed_points=50,
        points_to_accrue=12,
        hold_id="cx-7Q2M",
        balance=950,
        token="c1.the-gateway-token",
    )
    answer = mapping.discount_answer(msg, receipt, result)
    assert answer is not None
    out = json.loads(wire.render_discount(answer))
    assert out["callback"] == "onResult"
    assert out["result"]["discount"] == "86.00"
    assert out["result"]["positionUuidToDiscountMap"] == {payloads.P1: "36.00", payloads.P2: "50.00"}
    assert out["result"]["extra"] == {"posgw": "c1.the-gateway-token"}  # the calc token, opaque here
    assert out["printText"] == "Карта *2345\nСписано баллов: 50\nНачислено баллов: 12\nБаланс: 950"


def test_manual_receipt_discount_already_present_is_kept_and_added() -> None:
    # 10.00 manual discount already on the receipt, split by the terminal 6.00 / 4.00
    msg = parsed(payloads.calc(discount="10.00", discounts={payloads.P1: "6.00", payloads.P2: "4.00"}))
    receipt = mapping.calc_receipt(msg, now=NOW)
    assert [ln.amount for ln in receipt.lines] == [36000 - 600, 22050 - 400]
    answer = mapping.discount_answer(msg, receipt, calc_result(receipt, {payloads.P1: 1000}))
    assert answer is not None
    assert answer.discount == 2000
    assert dict(answer.position_discounts) == {payloads.P1: 1600, payloads.P2: 400}


def test_manual_discount_without_a_split_is_spread_exactly() -> None:
    msg = parsed(payloads.calc(discount="0.03"))
    receipt = mapping.calc_receipt(msg, now=NOW)
    assert [ln.amount for ln in receipt.lines] == [36000 - 2, 22050 - 1]  # largest remainder


@pytest.mark.parametrize(
    ("total", "weights", "shares"),
    [
        (100, [1, 1, 1], [34, 33, 33]),
        (1, [36000, 22050], [1, 0]),
        (3, [1, 1, 1, 1], [1, 1, 1, 0]),
        (0, [5, 7], [0, 0]),
        (7, [0, 0], [7, 0]),
    ],
)
def test_spread_is_exact_to_the_kopeck(total: int, weights: list[int], shares: list[int]) -> None:
    assert mapping.spread(total, weights) == shares
    assert sum(mapping.spread(total, weights)) == total


def test_no_customer_or_unknown_customer_means_skip() -> None:
    msg = parsed(payloads.calc(card=None))
    receipt = mapping.calc_receipt(msg, now=NOW)
    assert mapping.discount_answer(msg, receipt, calc_result(receipt)) is None
    msg = parsed(payloads.calc())
    receipt = mapping.calc_receipt(msg, now=NOW)
    assert mapping.discount_answer(msg, receipt, calc_result(receipt, customer_found=False)) is None
    assert wire.render_discount(None) == b'{"callback":"skip"}'


def test_offline_answer_prints_pending_balance_never_a_stale_figure() -> None:
    msg = parsed(payloads.calc())
    receipt = mapping.calc_receipt(msg, now=NOW)
    answer = mapping.discount_answer(
        msg, receipt, calc_result(receipt, offline=True, points_to_accrue=3, balance=None)
    )
    assert answer is not None and answer.discount == 0
    assert answer.print_text.endswith("Будет начислено баллов: 3\nБаланс: обновится позже")


def test_discount_larger_than_the_position_is_refused() -> None:
    with pytest.raises(BadInput):
        mapping.calc_receipt(
            parsed(payloads.calc(discount="400.00", discounts={payloads.P1: "400.00"})), now=NOW
        )


# ------------------------------------------------------------------ commits

CARD = CustomerId(IdKind.CARD, "2000012345")
CLAIMS = CalcClaims(customer=CARD, redeemed=50, discount=8600, hold_id="h-1", offline=False,
                    program_version="", register_id="")
LG = {"posgw": "c1.token-of-the-calc"}


def test_close_sale_carries_the_calc_token_and_lines_before_our_discount() -> None:
    msg = parsed(payloads.close(extra=LG, discounts={payloads.P1: "36.00", payloads.P2: "50.00"}))
    event = mapping.plugin_event(msg, CLAIMS, now=NOW)
    assert not isinstance(event, str)
    assert event.kind is EventKind.SALE and event.key == f"evotor:doc:{payloads.RECEIPT}"
    assert event.calc_token == "c1.token-of-the-calc"  # the pipeline applies customer, points, hold
    assert event.receipt is not None and event.receipt.customer is None  # the close carried no loyalty
    # amounts before our discount; committed lines keyed by product identity
    assert [(ln.line_id, ln.amount) for ln in event.receipt.lines] == [
        (f"p:{payloads.PRODUCT1}", 36000),
        ("n:Cheese, by weight", 22050),
    ]
    assert event.receipt.payments[0].kind == "card" and event.receipt.payments[0].amount == 45450


def test_same_product_on_two_positions_is_one_committed_line() -> None:
    pos = payloads.positions()
    pos.append(dict(pos[0], uuid="other"))
    event = mapping.plugin_event(parsed(payloads.close(pos=pos)), None, now=NOW)
    assert not isinstance(event, str) and event.receipt is not None
    assert event.receipt.lines[0].qty_milli == 4000 and event.receipt.lines[0].amount == 72000


def test_payback_refunds_the_base_sale_per_line() -> None:
    pos = [dict(payloads.positions()[0], uuid="new-uuid", quantity="1")]
    msg = parsed(
        payloads.close(uuid="pb-1", kind="payback", doc_type="PAYBACK", base=payloads.RECEIPT, pos=pos)
    )
    event = mapping.plugin_event(msg, None, now=NOW)
    assert not isinstance(event, str)
    assert event.kind is EventKind.REFUND and event.sale_key == f"evotor:doc:{payloads.RECEIPT}"
    assert [(r.line_id, r.qty_milli) for r in event.refund_lines] == [(f"p:{payloads.PRODUCT1}", 1000)]


def test_cleared_receipt_cancels_only_a_hold() -> None:
    cleared = payloads.close(extra=LG)
    cleared["action"] = "evotor.intent.action.receipt.sell.CLEARED"
    event = mapping.plugin_event(parsed(cleared), CLAIMS, now=NOW)
    assert not isinstance(event, str)
    assert event.kind is EventKind.CANCEL and event.calc_token == LG["posgw"]
    no_hold = replace(CLAIMS, hold_id="")
    assert mapping.plugin_event(parsed(cleared), no_hold, now=NOW) == "cleared receipt held no points"
    cleared["receipt"] = None
    assert mapping.plugin_event(parsed(cleared), None, now=NOW) == "cleared receipt held no points"


def test_plugin_close_and_cloud_receipt_share_the_key() -> None:
    from drivers.evotor import cloud_wire

    cloud = {
        "id": "env-1",
        "timestamp": 1,
        "userId": "01-1",
        "type": "ReceiptCreated",
        "version": 2,
        "data": {
            "id": payloads.RECEIPT,
            "type": "SELL",
            "storeId": payloads.STORE,
            "dateTime": "2026-01-01T07:05:10.000Z",
            "items": [
                {
                    "id": payloads.PRODUCT1,
                    "name": "Cappuccino",
                    "quantity": 2,
                    "price": 180,
                    "sumPrice": 324,
                    "discount": 36,
                }
            ],
            "extras": LG,
        },
    }
    [doc] = cloud_wire.parse_receipts(json.dumps(cloud).encode())
    from_cloud = mapping.cloud_event(doc, now=NOW)
    from_plugin = mapping.plugin_event(parsed(payloads.close(extra=LG)), CLAIMS, now=NOW)
    assert not isinstance(from_cloud, str) and not isinstance(from_plugin, str)
    assert from_cloud.key == from_plugin.key and from_cloud.calc_token == from_plugin.calc_token
    assert from_cloud.receipt is not None and from_cloud.receipt.lines[0].line_id == f"p:{payloads.PRODUCT1}"
