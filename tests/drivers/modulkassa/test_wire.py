"""drivers.modulkassa.wire: the flattened loyalty-request Bundle, check broadcasts (the Gson
check inside), answers rendered as the SDK's LoyaltyResult keys; vendor examples; malformed input
is BadInput naming the field. The payload builders here are shared with test_mapping.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modulkassa import wire
from gateway.errors import BadInput
from tests.conftest import require_vendor

VENDOR = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "vendor" / "modulkassa"
NOW = datetime(2026, 1, 10, tzinfo=UTC)


def vendor(name: str) -> bytes:
    return require_vendor(VENDOR / name).read_bytes()


def operation(positions: list[tuple[str, str, str, str]] | None = None, **loyalty: Any) -> dict[str, Any]:
    """(id, measure, price, quantity) per position, flattened like the SDK's Bundle."""
    positions = positions or [("p1", "PCS", "150.00", "3"), ("p2", "KG", "640.00", "0.350")]
    data: dict[str, Any] = {
        "request_id": "a3f9c2d1",
        "retail_point_id": "rp-0457",
        "user_id": "u-0012",
        "positions": [p[0] for p in positions],
    }
    for pid, measure, price, qty in positions:
        data.update(
            {
                f"position/{pid}/invent_code": f"code-{pid}",
                f"position/{pid}/barcode": "",
                f"position/{pid}/name": f"name {pid}",
                f"position/{pid}/type": "INVENTORY",
                f"position/{pid}/measure": measure,
                f"position/{pid}/price": price,
                f"position/{pid}/quantity": qty,
                f"position/{pid}/modifiers": [],
            }
        )
    return {
        "operation": "loyalty-request",
        "loyalty": {"card": "2000012345", "redeem": "0", **loyalty},
        "data": data,
    }


def req(payload: dict[str, Any] | None = None) -> wire.LoyaltyRequest:
    return wire.parse_operation(json.dumps(payload or operation()).encode())


def closed(doc_type: str = "SALE", *, check_id: str = "chk-1", **loyalty: Any) -> dict[str, Any]:
    check = {
        "id": check_id,
        "docType": doc_type,
        "dateTime": "2026-01-10T12:31:05+03:00",
        "number": 88,
        "retailPointId": "rp-0457",
        "inventPositions": [
            {"inventCode": "CF-03", "name": "Americano", "price": 150.00, "quantity": 2, "discountAmount": 0},
            {
                "inventCode": "CF-03",
                "name": "Americano",
                "price": 150.00,
                "quantity": 1,
                "amount": 0,
                "discountAmount": 150.00,
            },
            {
                "inventCode": "CH-11",
                "name": "Cheese",
                "price": 640.00,
                "quantity": 0.350,
                "amount": 212.80,
                "discountAmount": 11.20,
            },
        ],
        "moneyPositions": [{"paymentType": "CARD", "sum": 512.80}],
        "fiscalInfo": {"shiftNumber": 31, "checkNumber": 88, "fnDocNumber": 4410, "fnDocMark": 92},
    }
    return {
        "action": wire.CLOSED,
        "loyalty": loyalty,
        "extras": {
            "check_id": check_id,
            "linked_id": None,
            "check_sum": "512.80",
            "check": json.dumps(check),
        },
    }


# ------------------------------------------------------------------ vendor examples


def test_vendor_check_fiscalinfo_date_string_form_and_clean_rejection() -> None:
    raw = json.loads(vendor("check-serialized-fiscalinfo-date.json"))
    assert wire.timestamp(raw["fiscalInfo"]["date"], "d") == datetime(
        2020, 6, 1, 13, 3, 26, tzinfo=timezone(timedelta(hours=7))
    )
    with pytest.raises(BadInput, match="id: is required"):  # a reduced Check: no id, no docType
        wire.parse_check(raw, "check")


def test_vendor_fn_response_fiscalinfo_plus0000_date() -> None:
    raw = json.loads(vendor("fn-doc-response-completed.json"))
    assert wire.timestamp(raw["fiscalInfo"]["date"], "d") == datetime(2020, 2, 26, 0, 31, 19, tzinfo=UTC)


@pytest.mark.parametrize(
    "name", ["fn-doc-status-queued.json", "fn-doc-response-completed.json", "orders-create-request.json"]
)
def test_cloud_api_documents_are_not_checks_and_are_rejected_cleanly(name: str) -> None:
    with pytest.raises(BadInput):
        wire.parse_check(json.loads(vendor(name), parse_float=Decimal), "check")


def test_every_vendor_file_is_covered_here() -> None:
    require_vendor(VENDOR)
    covered = {
        "check-serialized-fiscalinfo-date.json",
        "fn-doc-request.json",
        "fn-doc-response-completed.json",
        "fn-doc-status-queued.json",
        "orders-create-request.json",
    }
    # covered here or in test_mapping.py
    assert {p.name for p in VENDOR.iterdir()} <= covered, "a new vendor example needs a test"


# ------------------------------------------------------------------ operation rejections


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("request_id"), "request_id"),
        (lambda d: d.update({"position/p1/price": "1,5"}), "position/p1/price"),
        (lambda d: d.update({"positions": ["p1", "p1"]}), "positions[1]"),
        (lambda d: d.pop("position/p2/quantity"), "position/p2/quantity"),
    ],
)
def test_operation_rejections_name_the_field(mutate: Any, field: str) -> None:
    payload = operation()
    mutate(payload["data"])
    with pytest.raises(BadInput) as err:
        req(payload)
    assert field in err.value.field




# ------------------------------------------------------------------ loyalty-request


def test_operation_is_parsed_field_by_field() -> None:
    payload = operation(card="2000012345", redeem="max", docType="sale", device="dev-1", phone="+7999")
    payload["data"]["position/p1/modifiers"] = [{"id": "m"}]
    payload["data"]["position/p2/type"] = "service"
    r = req(payload)
    assert (r.request_id, r.retail_point_id, r.user_id) == ("a3f9c2d1", "rp-0457", "u-0012")
    assert r.positions == (
        wire.MkPosition("p1", "code-p1", "", "name p1", "INVENTORY", "PCS", 15000, 3000, True),
        wire.MkPosition("p2", "code-p2", "", "name p2", "SERVICE", "KG", 64000, 350, False),
    )
    assert r.loyalty == wire.Loyalty(card="2000012345", phone="+7999", redeem_points=0, redeem_max=True,
                                     doc_type="SALE", device="dev-1")


@pytest.mark.parametrize(("measure", "qty", "stored", "piece"), [
    ("PCS", "3", "PCS", True),
    ("pcs", "2", "PCS", True),  # the cloud APIs write lower case
    ("", "1", "PCS", True),  # absent: piece goods
    ("PCS", "1.5", "PCS", False),  # a fraction of a piece is never split
    ("KG", "1", "KG", False),
    ("LITER", "2", "LITER", False),  # an unknown measure: not piece goods
])
def test_measure_and_piece(measure: str, qty: str, stored: str, piece: bool) -> None:
    pos = req(operation([("p", measure, "10.00", qty)])).positions[0]
    assert (pos.measure, pos.piece) == (stored, piece)


@pytest.mark.parametrize(("price", "qty", "kopecks", "milli"), [
    ("150.00", "3", 15000, 3000), ("0.005", "0.0005", 1, 1), ("99.994", "1.0004", 9999, 1000),
    ("1", "0.350", 100, 350),
])
def test_money_and_quantities_half_up(price: str, qty: str, kopecks: int, milli: int) -> None:
    pos = req(operation([("p", "KG", price, qty)])).positions[0]
    assert (pos.price, pos.qty_milli) == (kopecks, milli)


@pytest.mark.parametrize(("mutate", "field", "message"), [
    (lambda p: p.update(operation="loyalty-cancel"), "operation", "unsupported operation 'loyalty-cancel'"),
    (lambda p: p.pop("data"), "data", ""),
    (lambda p: p["data"].update(positions=[""]), "data.positions[0]", ""),
    (lambda p: p["data"].update(positions="p1"), "data.positions", ""),
    (lambda p: p["data"].update(positions=[f"p{i}" for i in range(1001)]), "data.positions", "at most 1000"),
    (lambda p: p["data"].update({"request_id": "r" * 256}), "data.request_id", ""),
    (lambda p: p["loyalty"].update(redeem="-5"), "loyalty.redeem", ""),
    (lambda p: p["loyalty"].update(card="9" * 129), "loyalty.card", ""),
])
def test_more_operation_rejections(mutate: Any, field: str, message: str) -> None:
    payload = operation()
    mutate(payload)
    with pytest.raises(BadInput, match=message or None) as err:
        req(payload)
    assert err.value.field == field


@pytest.mark.parametrize("body", [b"", b"[]", b"{", b'{"operation": "loyalty-request"}', "\ufeff{}".encode()])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(BadInput):
        wire.parse_operation(body)


# ------------------------------------------------------------------ check broadcasts


def test_closed_event_parses_the_check_inside_the_string() -> None:
    ev = wire.parse_event(json.dumps(closed(data="c1.tok", saleCheckId="s-1")).encode())
    assert (ev.action, ev.check_id, ev.check_sum) == (wire.CLOSED, "chk-1", 51280)
    assert ev.loyalty.data == "c1.tok" and ev.loyalty.sale_check_id == "s-1"
    check = ev.check
    assert check is not None
    assert (check.check_id, check.doc_type, check.number, check.shift, check.fiscal_sign) == (
        "chk-1", "SALE", "88", "31", "92")
    assert check.occurred_at == datetime(2026, 1, 10, 12, 31, 5, tzinfo=timezone(timedelta(hours=3)))
    assert check.payments == (("card", 51280),)
    assert check.lines == (
        wire.CheckLine("CF-03", "", "Americano", 15000, 2000, None, 0),
        wire.CheckLine("CF-03", "", "Americano", 15000, 1000, 0, 15000),
        wire.CheckLine("CH-11", "", "Cheese", 64000, 350, 21280, 1120),
    )


def test_check_as_an_object_is_tolerated_and_negatives_are_made_positive() -> None:
    payload = closed("RETURN")
    check = json.loads(payload["extras"]["check"])
    check["inventPositions"] = [{"inventCode": "A", "price": -10, "quantity": -2, "amount": -20,
                                 "discountAmount": -1}]
    check["moneyPositions"] = [{"sum": 20}]
    payload["extras"]["check"] = check
    ev = wire.parse_event(json.dumps(payload).encode())
    assert ev.check is not None
    assert ev.check.lines == (wire.CheckLine("A", "", "", 1000, 2000, 2000, 100),)
    assert ev.check.payments == (("other", 2000),)


def test_check_falls_back_to_document_type_checkout_time_and_fiscal_number() -> None:
    check = wire.parse_check({"id": "x", "documentType": "return", "checkoutDateTime": "2026-01-10T10:00:00Z",
                              "fiscalInfo": {"checkNumber": 7}}, "check")
    assert (check.doc_type, check.number, check.occurred_at) == (
        "RETURN", "7", datetime(2026, 1, 10, 10, tzinfo=UTC))
    assert wire.parse_check({"id": "x", "docType": "SALE"}, "c").occurred_at is None


@pytest.mark.parametrize(("event", "field", "message"), [
    ({"action": "ru.modulkassa.pos.events.OTHER", "extras": {"check_id": "c"}}, "action",
     "unknown broadcast"),
    ({"extras": {"check_id": "c"}}, "action", "required"),
    ({"action": wire.CLOSED, "extras": {"check_id": "c"}}, "extras.check", "must carry its details"),
    ({"action": wire.CLOSED, "extras": {"check_id": "c", "check": ""}}, "extras.check", "must carry"),
    ({"action": wire.CANCELLED, "extras": {}}, "extras.check_id", "required"),
    ({"action": wire.CANCELLED, "extras": {"check_id": "c", "check_sum": "x"}}, "extras.check_sum", ""),
])
def test_event_rejections(event: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(BadInput, match=message or None) as err:
        wire.parse_event(json.dumps(event).encode())
    assert err.value.field.startswith(field)


def test_malformed_check_string_names_extras_check() -> None:
    event = {"action": wire.CLOSED, "extras": {"check_id": "c", "check": "{"}}
    with pytest.raises(BadInput) as err:
        wire.parse_event(json.dumps(event).encode())
    assert err.value.field == "extras.check"


def test_cancel_without_a_check() -> None:
    ev = wire.parse_event(json.dumps({"action": wire.CANCELLED, "extras": {"check_id": "c"}}).encode())
    assert (ev.check, ev.check_sum, ev.loyalty) == (None, 0, wire.Loyalty())


# ------------------------------------------------------------------ answers


@pytest.mark.parametrize(("qty", "piece", "text"), [
    (2000, True, "2"), (1000, True, "1"), (350, False, "0.350"), (1500, True, "1.500"),
    (1000, False, "1.000"), (12345, False, "12.345"), (0, True, "0"),
])
def test_quantity_text(qty: int, piece: bool, text: str) -> None:
    assert wire.quantity_text(qty, piece=piece) == text


def test_render_succeeded_exact() -> None:
    impacts = (wire.Impact("i1", "p1", 14667, 2000, True), wire.Impact("i2", "p2", 60800, 350, False))
    ans = wire.LoyaltyAnswer(impacts, data="c1.x", printable="Карта *2345")
    assert wire.render_succeeded(ans) == (
        '{"result":"succeeded","data":{"request_type":"LOYALTY","impacts":["i1","i2"],'
        '"impact/i1/position_id":"p1","impact/i1/price":"146.67","impact/i1/quantity":"2",'
        '"impact/i2/position_id":"p2","impact/i2/price":"608.00","impact/i2/quantity":"0.350",'
        '"data":"c1.x","printable_data":"Карта *2345"}}').encode()


def test_render_never_writes_blank_data_or_printable() -> None:
    out = json.loads(wire.render_succeeded(wire.LoyaltyAnswer((), data="", printable=" \n ")))
    assert out == {"result": "succeeded", "data": {"request_type": "LOYALTY", "impacts": []}}


def test_render_failed() -> None:
    assert wire.render_failed("нет карты", "loyalty.card") == (
        '{"result":"failed","message":"нет карты","field":"loyalty.card"}').encode()
    assert wire.render_failed("x") == b'{"result":"failed","message":"x"}'
    long = json.loads(wire.render_failed("m" * 600, "f" * 400))
    assert (len(long["message"]), len(long["field"])) == (500, 300)


# ------------------------------------------------------------------ fuzzing

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=16), kids, max_size=5),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_parsers_raise_only_bad_input(body: bytes) -> None:
    for parse in (wire.parse_operation, wire.parse_event):
        try:
            parse(body)
        except BadInput:
            pass
