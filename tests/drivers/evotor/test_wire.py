"""Evotor wire parsing: the vendor's own examples, unit tables, and fuzzing (only BadInput escapes).

The cloud webhooks (drivers.evotor.cloud_wire) have their own mirror, test_cloud_wire.py; the fuzzing
here still runs every parser of both modules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.evotor import cloud_wire, mapping, wire
from gateway.errors import BadInput
from tests.conftest import require_vendor
from tests.drivers.evotor import payloads

VENDOR = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "vendor" / "evotor"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SELL_UUID = "175d8ae9-79db-4588-a65a-8f0613e2d0ff"
PRODUCT = "p:74e99680-3f9b-4abe-b902-fe197cf28ed2"


def vendor(name: str) -> bytes:
    return require_vendor(VENDOR / name).read_bytes()


# ------------------------------------------------------------------ vendor examples


def test_our_error_body_has_the_vendor_error_shape() -> None:
    vendor_err = json.loads(vendor("webhook-error-response-400.json"))["errors"][0]
    ours = json.loads(wire.render_error(2003, "incorrect", "deviceUuid", "null"))["errors"][0]
    assert ours == vendor_err


def test_js_sdk_position_parses_with_non_uuid_ids_and_kg_precision_zero() -> None:
    pos = wire.parse_position(json.loads(vendor("device-js-position-add.json"), parse_float=Decimal), "p")
    assert pos == wire.Position(
        uuid="8e0ffg-lk3e-e93bnk-v0p41",
        product_uuid="trb44-i32lev-9833jf",
        product_code="1024",
        name="Example",
        measure_name="kg",
        measure_precision=0,
        price=10000,
        price_with_discount=10000,
        qty_milli=1000,
    )


def test_every_vendor_file_is_covered_here() -> None:
    require_vendor(VENDOR)
    covered = {
        "cloud-v1-document-sell.txt",
        "cloud-v1-document-payback.json",
        "cloud-v2-document-open-session.json",
        "cloud-v2-documents-page-empty.json",
        "cloud-v1-ofd-documents-response.txt",
        "webhook-user-verify-request.json",
        "webhook-user-verify-response.json",
        "webhook-error-response-400.json",
        "device-js-position-add.json",
    }
    # covered here or in test_cloud_wire.py
    assert {p.name for p in VENDOR.iterdir()} <= covered, "a new vendor example needs a test"


# ------------------------------------------------------------------ units at the edge


@pytest.mark.parametrize(
    ("raw", "kopecks"),
    [
        ("199.90", 19990),
        ("0.005", 1),
        ("0.004", 0),
        ("100", 10000),
        (Decimal("3548.00"), 354800),
        (3548, 354800),
        ("-3548.00", -354800),
        (" 1.5 ", 150),
    ],
)
def test_rubles_to_kopecks_half_up(raw: object, kopecks: int) -> None:
    assert wire.kopecks(raw, "x") == kopecks


@pytest.mark.parametrize("raw", [1.5, True, None, "abc", "NaN", "Infinity", "1e30", [], {}])
def test_money_refuses_floats_and_garbage(raw: object) -> None:
    with pytest.raises(BadInput):
        wire.kopecks(raw, "x")


@pytest.mark.parametrize(("kopecks", "text"), [(8600, "86.00"), (5, "0.05"), (-5, "-0.05"), (0, "0.00")])
def test_kopecks_to_rubles(kopecks: int, text: str) -> None:
    assert wire.rubles(kopecks) == text


@pytest.mark.parametrize(
    ("raw", "when"),
    [
        ("2026-01-01T07:05:10.000+0000", datetime(2026, 1, 1, 7, 5, 10, tzinfo=UTC)),
        ("2026-01-01T07:05:10.000Z", datetime(2026, 1, 1, 7, 5, 10, tzinfo=UTC)),
        ("2026-01-01T10:05:10+03:00", datetime(2026, 1, 1, 7, 5, 10, tzinfo=UTC)),
    ],
)
def test_timestamps(raw: str, when: datetime) -> None:
    assert wire.timestamp(raw, "t") == when


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(BadInput, match="offset"):
        wire.timestamp("2026-01-01T07:05:10", "t")


def test_trailing_commas_stripped_only_outside_strings() -> None:
    assert json.loads(wire.strip_trailing_commas('{"a": [1, 2,], "b": "x,}",}')) == {"a": [1, 2], "b": "x,}"}


def test_plugin_calc_parses_the_protocol_example() -> None:
    msg = wire.parse_plugin(payloads.body(payloads.calc()))
    assert msg.kind is wire.Kind.CALC and msg.doc_type is wire.DocType.SELL
    assert msg.loyalty == wire.Loyalty(card="2000012345", redeem_points=50)
    assert msg.snapshot is not None
    assert [(p.uuid, p.price, p.qty_milli) for p in msg.snapshot.positions] == [
        (payloads.P1, 18000, 2000),
        (payloads.P2, 90000, 245),
    ]


@pytest.mark.parametrize(
    ("action", "kind", "doc"),
    [
        ("evo.v2.receipt.paybackWithSell.receiptDiscount", wire.Kind.CALC, wire.DocType.PAYBACK),
        ("evo.v2.receipt.buybackWithBuy.receiptDiscount", wire.Kind.CALC, wire.DocType.BUYBACK),
        ("evotor.intent.action.receipt.payback.RECEIPT_CLOSED", wire.Kind.CLOSE, wire.DocType.SELL),
        ("evotor.intent.action.receipt.sell.CLEARED", wire.Kind.CLEAR, wire.DocType.SELL),
    ],
)
def test_actions(action: str, kind: wire.Kind, doc: wire.DocType) -> None:
    msg = wire.parse_plugin(payloads.body(payloads.calc(action=action)))
    assert (msg.kind, msg.doc_type) == (kind, doc)  # a close takes its type from the snapshot header


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.update(action="evo.v2.receipt.sell.somethingElse"), "action"),
        (lambda p: p["receipt"]["printDocuments"][0]["positions"][0].update(price="180,00"), "price"),
        (lambda p: p["receipt"]["printDocuments"][0]["positions"][0].update(quantity="two"), "quantity"),
        (lambda p: p["receipt"]["printDocuments"][0]["positions"][0].pop("uuid"), "uuid"),
        (lambda p: p.pop("receipt"), "receipt"),
        (lambda p: p["loyalty"].update(redeem="1.5"), "loyalty.redeem"),
        (lambda p: p["receipt"]["header"].update(type=None), "header.type"),
    ],
)
def test_plugin_rejections_name_the_field(mutate: object, field: str) -> None:
    payload = payloads.calc()
    mutate(payload)  # type: ignore[operator]
    with pytest.raises(BadInput) as err:
        wire.parse_plugin(payloads.body(payload))
    assert field in err.value.field


# ------------------------------------------------------------------ fuzzing

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)

PARSERS = [
    wire.parse_plugin,
    cloud_wire.parse_receipts,
    cloud_wire.parse_documents,
    cloud_wire.parse_user_verify,
]


def _only_bad_input(parse: object, body: bytes) -> None:
    try:
        result = parse(body)  # type: ignore[operator]
        if isinstance(result, wire.PluginMessage):  # and what the driver does next
            if result.kind is wire.Kind.CALC:
                mapping.calc_receipt(result, now=NOW)
            else:
                mapping.plugin_event(result, None, now=NOW)
        elif isinstance(result, list):
            for doc in result:
                mapping.cloud_event(doc, now=NOW)
    except BadInput:
        pass


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes(data: bytes) -> None:
    for parse in PARSERS:
        _only_bad_input(parse, data)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_fuzz_json_shapes(value: object) -> None:
    body = json.dumps(value).encode()
    for parse in PARSERS:
        _only_bad_input(parse, body)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["calc", "close"]),
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "action",
                    "uuid",
                    "price",
                    "quantity",
                    "discount",
                    "type",
                    "date",
                    "extra",
                    "positions",
                    "measurePrecision",
                    "priceWithDiscountPosition",
                    "discounts",
                    "redeem",
                    "card",
                    "baseReceiptUuid",
                    "value",
                ]
            ),
            json_values,
        ),
        max_size=4,
    ),
)
def test_fuzz_mutated_real_payloads(which: str, edits: list[tuple[str, object]]) -> None:
    payload = payloads.calc() if which == "calc" else payloads.close(extra={"posgw": "c1.x.y"})

    def visit(node: object, key: str, value: object) -> None:
        if isinstance(node, dict):
            for k in list(node):
                if k == key:
                    node[k] = value
                else:
                    visit(node[k], key, value)
        elif isinstance(node, list):
            for item in node:
                visit(item, key, value)

    for key, value in edits:
        visit(payload, key, value)
    _only_bad_input(wire.parse_plugin, json.dumps(payload).encode())
