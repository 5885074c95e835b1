"""drivers.native.wire: exact tables of bodies -> canonical objects, and refusals with field paths."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from drivers.native import wire
from gateway.errors import BadInput
from gateway.receipt import CustomerId, EventKind, IdKind, Line, Payment, RefundLine

NOW = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
MSK = timezone(timedelta(hours=3))


def sale_body() -> dict[str, Any]:
    return {
        "register_id": "R1", "receipt_number": "42", "shift": "7", "fiscal_sign": "FS1",
        "occurred_at": "2024-05-01T12:00:00+03:00", "cashier": {"id": "c1", "name": "Anna"},
        "customer": {"phone": "+79001234567"}, "redeemed_points": 50, "hold_id": "h1",
        "payments": [{"kind": "card", "amount": 14950}],
        "lines": [
            {"line_id": "1", "sku": "MILK", "name": "Milk", "category": "dairy", "price": 10000,
             "qty_milli": 1000, "amount": 10000},
            {"line_id": "2", "sku": "CIG", "name": "Cigarettes", "price": 5000, "qty_milli": 1000,
             "amount": 5000, "discountable": False, "accruable": False, "min_unit_price": 4000},
        ],
    }


def test_sale_maps_every_field() -> None:
    event = wire.parse_sale(wire.parse_json(_dump(sale_body())), NOW, store_id="S1")
    assert event.kind is EventKind.SALE
    assert event.key == "native:R1:7:42:FS1"
    assert event.expected_redeemed == 50 and event.hold_id == "h1"
    r = event.receipt
    assert r is not None
    assert (r.register_id, r.receipt_number, r.shift, r.fiscal_sign, r.store_id, r.driver) == (
        "R1", "42", "7", "FS1", "S1", "native")
    assert r.occurred_at == datetime(2024, 5, 1, 12, 0, tzinfo=MSK)
    assert (r.cashier_id, r.cashier_name) == ("c1", "Anna")
    assert r.customer == CustomerId(IdKind.PHONE, "+79001234567")
    assert r.redeem_points == 50
    assert r.payments == (Payment("card", 14950),)
    assert r.lines == (
        Line("1", "MILK", "Milk", 10000, 1000, 10000, category="dairy"),
        Line("2", "CIG", "Cigarettes", 5000, 1000, 5000, discountable=False, accruable=False,
             min_unit_price=4000),
    )
    assert r.total == 15000


def test_sale_key_prefers_document_id() -> None:
    body = sale_body() | {"document_id": "doc-9"}
    assert wire.parse_sale(body, NOW).key == "native:R1:doc:doc-9"


def test_calculate_defaults() -> None:
    body = {"register_id": "R1", "lines": [sale_body()["lines"][0]], "redeem_max": True,
            "customer": {"qr": "QR-PAYLOAD", "otp": "1234"}}
    r = wire.parse_receipt(body, NOW)
    assert r.occurred_at == NOW and r.receipt_number == "" and r.redeem_max is True
    assert r.customer == CustomerId(IdKind.QR, "QR-PAYLOAD", otp="1234")


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (("lines", 0, "amount"), 100.5, "lines[0].amount", "must be an integer"),
        (("lines", 0, "amount"), "100", "lines[0].amount", "must be an integer"),
        (("lines", 0, "amount"), True, "lines[0].amount", "must be an integer"),
        (("lines", 0, "amount"), -1, "lines[0].amount", "must not be less than 0"),
        (("lines", 0, "amount"), 10**13 + 1, "lines[0].amount", "must not exceed"),
        (("lines", 1, "price"), 10**20, "lines[1].price", "must not exceed"),
        (("lines", 0, "qty_milli"), 0, "lines[0].qty_milli", "must not be less than 1"),
        (("lines", 0, "qty_milli"), 1.5, "lines[0].qty_milli", "must be an integer"),
        (("lines", 0, "line_id"), 7, "lines[0].line_id", "must be a string"),
        (("lines", 1, "line_id"), "1", "lines[1].line_id", "duplicate line id"),
        (("lines", 0, "discountable"), 1, "lines[0].discountable", "true or false"),
        (("lines", 0, "sku"), None, "lines[0].sku", "is required"),
        (("register_id",), None, "register_id", "is required"),
        (("receipt_number",), None, "receipt_number", "is required"),
        (("lines",), [], "lines", "at least one line"),
        (("lines",), {"a": 1}, "lines", "must be a list"),
        (("lines",), [1], "lines[0]", "must be an object"),
        (("redeemed_points",), -5, "redeemed_points", "must not be less than 0"),
        (("occurred_at",), "2024-05-01T12:00:00", "occurred_at", "UTC offset"),
        (("occurred_at",), "yesterday", "occurred_at", "RFC 3339"),
        (("customer",), {"phone": "1", "card": "2"}, "customer", "exactly one"),
        (("customer",), "79001234567", "customer", "must be an object"),
        (("payments",), [{"kind": "gold", "amount": 1}], "payments[0].kind", "must be one of"),
        (("payments",), [{"kind": "cash", "amount": 1.0}], "payments[0].amount", "must be an integer"),
        (("cashier",), {"id": 5}, "cashier.id", "must be a string"),
    ],
)
def test_sale_refusals(path: tuple[str | int, ...], value: Any, field: str, message: str) -> None:
    body = sale_body()
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(BadInput) as info:
        wire.parse_sale(wire.parse_json(_dump(body)), NOW)
    assert info.value.field == field
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"{", "malformed JSON"), (b"[1, 2]", "JSON object"), (b"\xff\xfe", "malformed JSON"),
     (b'{"a": NaN}', "not a number"), (b"[" * 100_000, "")],
)
def test_parse_json_refusals(body: bytes, message: str) -> None:
    with pytest.raises(BadInput) as info:
        wire.parse_json(body)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "body",
    [json.dumps({"a": 1, "b": "Молоко"}, ensure_ascii=False).encode("utf-16"),  # not UTF-8
     b'\xef\xbb\xbf{"a": 1, "b": "x"}',  # a UTF-8 byte order mark
     b'{"a": 1, "b": "\\ud800"}'],  # a lone surrogate
)
def test_parse_json_accepts_what_the_stdlib_accepts(body: bytes) -> None:
    assert wire.parse_json(body) == json.loads(body)


@pytest.mark.parametrize("text", ["100000000000000000000", "-100000000000000000000", "1e20", "100.0"])
def test_huge_or_fractional_amounts_refused(text: str) -> None:
    body = json.dumps(sale_body()).replace('"amount": 10000', f'"amount": {text}', 1).encode()
    with pytest.raises(BadInput) as info:
        wire.parse_sale(wire.parse_json(body), NOW)
    assert info.value.field == "lines[0].amount"


def test_refund_keys_and_lines() -> None:
    body = {"register_id": "R1", "refund_id": "rf-1", "sale": {"receipt_number": "42", "shift": "7",
            "fiscal_sign": "FS1"}, "lines": [{"line_id": "1", "qty_milli": 500}]}
    event = wire.parse_refund(body, NOW)
    assert event.kind is EventKind.REFUND
    assert event.key == "native:R1:refund:rf-1"
    assert event.sale_key == "native:R1:7:42:FS1"  # the same formula as the sale's own key
    assert event.refund_lines == (RefundLine("1", 500),) and event.refund_full is False
    full = wire.parse_refund({**body, "lines": None, "full": True, "sale": {"document_id": "d"}}, NOW)
    assert full.refund_full is True and full.sale_key == "native:R1:doc:d"


@pytest.mark.parametrize(
    ("change", "field"),
    [({"full": True}, "lines"), ({"lines": None}, "lines"), ({"refund_id": None}, "refund_id"),
     ({"sale": {}}, "sale.receipt_number"),
     ({"lines": [{"line_id": "1", "qty_milli": -1}]}, "lines[0].qty_milli")],
)
def test_refund_refusals(change: dict[str, Any], field: str) -> None:
    body = {"register_id": "R1", "refund_id": "rf-1", "sale": {"receipt_number": "42"},
            "lines": [{"line_id": "1", "qty_milli": 500}]}
    body = {k: v for k, v in (body | change).items() if v is not None}
    with pytest.raises(BadInput) as info:
        wire.parse_refund(body, NOW)
    assert info.value.field == field


def test_cancel_keys() -> None:
    sale = {"receipt_number": "42", "shift": "7"}
    with_id = wire.parse_cancel({"register_id": "R1", "cancel_id": "c-1", "sale": sale}, NOW)
    assert (with_id.kind, with_id.key) == (EventKind.CANCEL, "native:R1:cancel:c-1")
    assert with_id.sale_key == "native:R1:7:42:"
    without = wire.parse_cancel({"register_id": "R1", "sale": sale}, NOW)
    assert without.key == "native:R1:cancel:native:R1:7:42:"


def test_identify() -> None:
    assert wire.parse_identify({"customer": {"card": "777"}}) == CustomerId(IdKind.CARD, "777")
    with pytest.raises(BadInput) as info:
        wire.parse_identify({"customer": {}})
    assert info.value.field == "customer"


def test_input_is_not_mutated() -> None:
    body = sale_body()
    before = copy.deepcopy(body)
    wire.parse_sale(body, NOW)
    assert body == before


def _dump(obj: Any) -> bytes:
    import json

    return json.dumps(obj).encode()


@pytest.mark.parametrize(("sale", "field"), [
    ({"document_id": "D1", "shift": {"x": 1}}, "sale.shift"),
    ({"document_id": "D1", "receipt_number": 42}, "sale.receipt_number"),
    ({"document_id": "D1", "fiscal_sign": "x" * 65}, "sale.fiscal_sign"),
    ({"document_id": "D1", "shift": "7\u0012"}, "sale.shift"),
])
def test_sale_ref_with_document_id_still_checks_its_other_fields(sale: dict[str, object], field: str) -> None:
    """Found by schemathesis: with document_id given, the other fields of the reference were not
    read at all, so a wrong type or a control character there was accepted (the schema refuses it)."""
    with pytest.raises(BadInput) as err:
        wire.sale_ref_key(sale, "R1")
    assert err.value.field == field
    ref = {"document_id": "D1", "shift": "7", "receipt_number": ""}
    assert wire.sale_ref_key(ref, "R1") == "native:R1:doc:D1"
