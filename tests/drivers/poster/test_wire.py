"""Poster wire + mapping: vendor examples, signatures (independent hashlib), tables, fuzzing."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.poster import mapping, wire
from gateway.errors import BadInput
from gateway.receipt import EventKind
from tests.conftest import require_vendor
from tests.drivers.poster import payloads as p

VENDOR = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "vendor" / "poster"
NOW = datetime(2026, 1, 1, 10, tzinfo=UTC)


def vendor(name: str) -> bytes:
    return require_vendor(VENDOR / name).read_bytes()


def envelope(event: str, data: Any) -> bytes:
    return json.dumps({"event": event, "settings": p.settings(), "data": data}).encode()


# ------------------------------------------------------------------ vendor examples


def test_vendor_webhook_parses_and_its_placeholder_verify_fails() -> None:
    hook = wire.parse_webhook(vendor("webhook-transaction-added.json"))
    assert (
        hook.account,
        hook.account_number,
        hook.object,
        hook.object_id,
        hook.action,
        hook.time,
        hook.data,
    ) == ("api-demo", "813932", "transaction", "1", "added", "1518794257", None)
    assert not wire.verify_webhook(hook, p.SECRET)  # "a23sk3d9…" is not a hex md5 (SOURCES.md)
    assert (
        mapping.webhook_event(hook, None, now=NOW)
        == "transaction added: the platform app reports the order itself"
    )


def test_vendor_order_object_to_receipt() -> None:
    order = json.loads(vendor("pos-order-object.json"))
    receipt = mapping.calc_receipt(
        wire.parse_pos_event(envelope("beforeOrderClose", {"order": order})), now=NOW
    )
    table = [(x.line_id, x.price, x.qty_milli, x.amount) for x in receipt.lines]
    tech_card = "p177m" + hashlib.sha256(b'[{"m":1,"a":1}]').hexdigest()[:12]
    assert table == [
        ("p162", 1050, 2000, 2100),
        ("p151m59", 1500, 1000, 1500),
        ("p150", 20, 200_000, 4000),
        (tech_card, 1000, 1000, 1000),
    ]
    assert receipt.receipt_number == "1533541148416" and receipt.customer is None


def test_vendor_order_product_change_is_acknowledged_only() -> None:
    data = json.loads(vendor("pos-event-orderProductChange.json"))
    ev = wire.parse_pos_event(envelope("orderProductChange", data))
    assert ev.order is not None and ev.order.name == "25" and ev.order.products[0].price == 6000


def test_vendor_print_and_return_fiscal_is_a_per_line_refund() -> None:
    data = json.loads(vendor("pos-event-printFiscal.json"))  # returnFiscal.md carries the identical example
    ev = wire.parse_pos_event(envelope("returnFiscal", data))
    event = mapping.refund_of(ev, now=NOW)
    assert event.kind is EventKind.REFUND and [(x.line_id, x.qty_milli) for x in event.refund_lines] == [
        ("p137", 1000)
    ]
    assert event.sale_key == "poster:coffee-demo:3:order:1544010298315"


def test_vendor_get_active_order_with_empty_pay_type() -> None:
    order = json.loads(vendor("pos-orders-getActive-response.json"))["order"]
    ev = wire.parse_pos_event(envelope("afterOrderClose", {"order": order}))
    sale = mapping.sale_of(ev, now=NOW)
    assert sale.receipt is not None and [x.amount for x in sale.receipt.lines] == [0, 2500]


@pytest.mark.parametrize(
    "name", ["web-dash-getTransaction-response.json", "web-clients-getClient-response.json"]
)
def test_web_api_answers_are_not_messages_we_receive(name: str) -> None:
    body = vendor(name)
    with pytest.raises(BadInput):
        wire.parse_webhook(body)
    with pytest.raises(BadInput):
        wire.parse_pos_event(body)


def test_every_vendor_file_is_covered_here() -> None:
    require_vendor(VENDOR)
    source = Path(__file__).read_text()
    assert [f.name for f in sorted(VENDOR.iterdir()) if f.name not in source] == []


# ------------------------------------------------------------------ signatures


def test_webhook_verify_known_vector() -> None:
    data = '{"transactions_history":{"type_history":"close","time":1767254465000}}'
    signed = "coffee-demo;transaction;58031;changed;" + data + ";1767254466;" + p.SECRET
    expected = hashlib.md5(signed.encode()).hexdigest()
    hook = wire.parse_webhook(json.dumps(p.webhook(action="changed", data=data)).encode())
    assert p.webhook(action="changed", data=data)["verify"] == expected
    assert wire.webhook_signature(hook, p.SECRET) == expected and wire.verify_webhook(hook, p.SECRET)
    no_data = hashlib.md5(f"coffee-demo;transaction;58031;removed;1767254466;{p.SECRET}".encode()).hexdigest()
    assert wire.webhook_signature(wire.parse_webhook(json.dumps(p.webhook()).encode()), p.SECRET) == no_data


@pytest.mark.parametrize("field", ["account", "object", "object_id", "action", "data", "time", "verify"])
def test_tampering_with_any_signed_field_fails(field: str) -> None:
    hook = p.webhook(action="changed", data='{"a":1}')
    hook[field] = {"object_id": 58032, "data": '{"a":2}', "verify": "f" * 32}.get(
        field, str(hook[field]) + "x"
    )
    assert not wire.verify_webhook(wire.parse_webhook(json.dumps(hook).encode()), p.SECRET)
    assert not wire.verify_webhook(wire.parse_webhook(json.dumps(p.webhook()).encode()), "other-secret")


@pytest.mark.parametrize(("raw", "signed"), [(b"5", "5"), (b"5.0", "5"), (b"-12", "-12"),
                                             (b'"[1,2]"', "[1,2]"), (b'""', ""), (b'"not json"', "not json")])
def test_data_is_signed_as_phps_verifier_prints_it(raw: bytes, signed: str) -> None:
    body = b'{"account":"a","object":"stock","object_id":1,"action":"changed","time":"1","data":' + raw + b"}"
    assert wire.parse_webhook(body).data == signed


@pytest.mark.parametrize("raw", [b"1.5", b"true", b"[1,2]", b'{"a":1}', b"1e400", b"100000000000000000000"])
def test_data_without_a_defined_text_in_the_signature_is_bad_input(raw: bytes) -> None:
    body = b'{"account":"a","object":"stock","object_id":1,"action":"changed","time":"1","data":' + raw + b"}"
    with pytest.raises(BadInput, match="data"):
        wire.parse_webhook(body)


def test_render_guest_shows_earn_and_spend_only_for_a_found_guest_of_a_priced_order() -> None:
    assert json.loads(wire.render_guest(found=True, name="Анна", balance=480, earn=17, spend=0)) == {
        "found": True, "name": "Анна", "balance": 480, "offline": False, "earn": 17, "spend": 0}
    assert json.loads(wire.render_guest(found=True, balance=None, offline=True)) == {
        "found": True, "name": "", "balance": None, "offline": True}
    assert json.loads(wire.render_guest(found=False, name="x", balance=5, earn=1, spend=1)) == {
        "found": False, "name": "", "balance": None, "offline": False}


def test_data_is_hashed_raw_not_reserialised() -> None:
    data = '{ "b": 1,  "a": "/ш" }'  # spacing and escaping a re-serialiser would change
    assert wire.verify_webhook(wire.parse_webhook(json.dumps(p.webhook(data=data)).encode()), p.SECRET)


def test_proxy_signature_known_vector_and_reserialisations() -> None:
    url, when = "https://gw.example/v1/poster/pos-event", "1767254466"
    value = {"event": "beforeOrderClose", "note": "a/б"}
    js = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    php = json.dumps(value, separators=(",", ":")).replace("/", "\\/")
    for signed_body in (js, php):
        sig = hashlib.md5((url + signed_body + when + p.SECRET).encode()).hexdigest()
        pretty = json.dumps(value, indent=2).encode()  # what arrived differs from what was signed
        assert wire.verify_proxy(url, pretty, when, sig, p.SECRET)
        assert not wire.verify_proxy(url + "?x=1", pretty, when, sig, p.SECRET)
        assert not wire.verify_proxy(url, pretty, "1767254467", sig, p.SECRET)
        assert not wire.verify_proxy(url, pretty, when, sig, "")


# ------------------------------------------------------------------ CLIENT-QUIRKS tolerated


def test_quirks_json_string_body_products_array_string_numbers_form_webhook() -> None:
    inner = json.loads(p.before_close())
    inner["data"]["order"]["products"] = [{"id": "12", "count": "2", "price": "190"}]
    ev = wire.parse_pos_event(json.dumps(json.dumps(inner)).encode())  # a JSON string of JSON
    assert ev.order is not None and ev.order.products[0].price == 19000
    form = "&".join(f"{k}={v}" for k, v in p.webhook().items()).encode()
    assert wire.verify_webhook(wire.parse_webhook(form), p.SECRET)
    assert wire.parse_data('"{\\"a\\":\\"{}\\"}"') == {"a": "{}"}  # data as a JSON string of a JSON string


# ------------------------------------------------------------------ fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=5),
    max_leaves=20,
)


def only_bad_input(fn: Any, body: bytes) -> None:
    try:
        fn(body)
    except BadInput as exc:
        assert isinstance(exc.field, str)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_parsers_raise_only_bad_input(body: bytes) -> None:
    only_bad_input(wire.parse_webhook, body)
    only_bad_input(wire.parse_pos_event, body)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["account", "object", "object_id", "action", "time", "data", "verify"]), json_values)
def test_fuzz_webhook_fields(field: str, value: Any) -> None:
    hook = p.webhook(data="{}")
    hook[field] = value
    only_bad_input(lambda b: wire.parse_data(wire.parse_webhook(b).data), json.dumps(hook).encode())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60) | json_values.map(json.dumps))
def test_fuzz_data_strings(data: str) -> None:
    only_bad_input(lambda b: wire.parse_data(b.decode()), data.encode())
