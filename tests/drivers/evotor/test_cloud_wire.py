"""drivers.evotor.cloud_wire: Evotor's cloud webhooks (receipts v2, documents v1 with trailing commas
and REST-v2, user/verify) into CloudDocs: rubles to kopecks, magnitudes of paybacks, one object or an
array, non-receipts kept with the reason they are ignored, BadInput naming the field otherwise."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from drivers.evotor import cloud_wire, mapping
from drivers.evotor.cloud_wire import CloudDoc, CloudItem
from gateway.errors import BadInput
from gateway.receipt import EventKind
from tests.conftest import require_vendor

VENDOR = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "vendor" / "evotor"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SELL_UUID = "175d8ae9-79db-4588-a65a-8f0613e2d0ff"
PRODUCT = "p:74e99680-3f9b-4abe-b902-fe197cf28ed2"
MSK = timezone(timedelta(hours=3))


def vendor(name: str) -> bytes:
    return require_vendor(VENDOR / name).read_bytes()


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


# ------------------------------------------------------------------ vendor examples (moved from test_wire.py)


def test_v1_sell_document_with_trailing_commas_becomes_a_sale() -> None:
    raw = vendor("cloud-v1-document-sell.txt")
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)  # the quirk is real: the published example is not strict JSON
    [doc] = cloud_wire.parse_documents(raw)
    event = mapping.cloud_event(doc, now=NOW)
    assert not isinstance(event, str)
    assert event.kind is EventKind.SALE
    assert event.key == f"evotor:doc:{SELL_UUID}"
    assert event.register_id == "5a188de4-49b8-4cb4-800e-eb6b5202437e"
    assert event.receipt is not None
    assert [(ln.line_id, ln.qty_milli, ln.amount, ln.price) for ln in event.receipt.lines] == [
        (PRODUCT, 1000, 354800, 354800)
    ]
    assert event.receipt.receipt_number == "71" and event.receipt.shift == "1"
    assert event.occurred_at == datetime(2016, 9, 13, 14, 32, 9, tzinfo=UTC)


def test_v1_payback_document_refunds_the_sale_per_line() -> None:
    [doc] = cloud_wire.parse_documents(vendor("cloud-v1-document-payback.json"))
    event = mapping.cloud_event(doc, now=NOW)
    assert not isinstance(event, str)
    assert event.kind is EventKind.REFUND
    assert event.key == "evotor:doc:3a29586a-d809-49fc-b625-a51dfc40edf2"
    assert event.sale_key == f"evotor:doc:{SELL_UUID}"  # baseDocumentUUID links it to the sale
    assert [(r.line_id, r.qty_milli) for r in event.refund_lines] == [
        (PRODUCT, 1000)
    ]  # negatives -> magnitudes
    assert event.refund_amount == 354800


def test_v1_documents_arrive_as_an_array_too() -> None:
    sell = vendor("cloud-v1-document-sell.txt").decode()
    payback = vendor("cloud-v1-document-payback.json").decode()
    docs = cloud_wire.parse_documents(f"[{sell},{payback}]".encode())
    assert [d.doc_type for d in docs] == ["SELL", "PAYBACK"]


def test_v2_open_session_document_is_acknowledged_and_ignored() -> None:
    [doc] = cloud_wire.parse_documents(vendor("cloud-v2-document-open-session.json"))
    assert doc.receipt_kind is None
    assert mapping.cloud_event(doc, now=NOW) == "document type 'OPEN_SESSION' carries no sale or refund"


@pytest.mark.parametrize(
    "name", ["cloud-v2-documents-page-empty.json", "cloud-v1-ofd-documents-response.txt"]
)
def test_pull_api_responses_are_not_webhooks_and_are_rejected_cleanly(name: str) -> None:
    # Answers of Evotor's pull API (documents page, OFD data): never sent to us; if they were, a clean 400.
    with pytest.raises(BadInput, match="type: is required"):
        cloud_wire.parse_documents(vendor(name))


def test_user_verify_request_and_our_answer_has_the_vendor_keys() -> None:
    req = cloud_wire.parse_user_verify(vendor("webhook-user-verify-request.json"))
    assert req.user_uuid == "01-000000000000001"  # not a uuid: never validated as one
    expected = json.loads(vendor("webhook-user-verify-response.json"))
    assert set(expected) == {"userUuid", "hasBilling", "token"}  # what driver._verify answers


# ------------------------------------------------------------------ receipts (v2 webhook)


def receipt_env(**data: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "r-1", "type": "SELL", "deviceId": "dev-1", "storeId": "st-1", "number": 12, "shiftId": "7",
        "dateTime": "2026-01-10T12:00:00+0300", "baseReceiptId": None,
        "items": [{"id": "it-1", "code": "42", "name": "Milk", "price": 89.9, "quantity": 2, "discount": 10},
                  {"id": "it-2", "name": "Cheese", "price": "640.005", "quantity": 0.35}],
        "extras": {"posgw": "c1.x"},
    }
    base.update(data)
    return {"id": "env-1", "timestamp": 1, "userId": "u", "type": "ReceiptCreated", "version": 2,
            "data": base}


def test_receipt_parsed_field_by_field() -> None:
    [doc] = cloud_wire.parse_receipts(body(receipt_env()).replace(b"89.9", b"89.90"))
    assert doc == CloudDoc(
        doc_id="r-1", doc_type="SELL", receipt_kind="sale", ignored_reason="", device_id="dev-1",
        store_id="st-1", number="12", session="7", occurred_at=datetime(2026, 1, 10, 12, tzinfo=MSK),
        base_doc_id="", extras={"posgw": "c1.x"},
        items=(CloudItem("it-1", "42", "Milk", 8990, 2000, 17980, 1000),
               CloudItem("it-2", "", "Cheese", 64001, 350, 22400, 0)),  # half-up, magnitudes
    )


def test_receipts_as_an_array_and_payback_kind() -> None:
    docs = cloud_wire.parse_receipts(body([receipt_env(), receipt_env(id="r-2", type="PAYBACK",
                                                                       baseReceiptId="r-1")]))
    assert [(d.doc_id, d.receipt_kind, d.base_doc_id) for d in docs] == [
        ("r-1", "sale", ""), ("r-2", "refund", "r-1")]


@pytest.mark.parametrize("doc_type", ["OPEN_SESSION", "CLOSE_SESSION", "sell", "CORRECTION"])
def test_other_types_carry_the_reason(doc_type: str) -> None:
    [doc] = cloud_wire.parse_receipts(body(receipt_env(type=doc_type)))
    assert doc.receipt_kind is None
    assert doc.ignored_reason == f"document type {doc_type!r} carries no sale or refund"


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.pop("type"), "body[0].data.type"),
    (lambda d: d.pop("id"), "body[0].data.id"),
    (lambda d: d.update(dateTime="2026-01-10T12:00:00"), "body[0].data.dateTime"),
    (lambda d: d["items"][1].update(price="1,5"), "body[0].data.items[1].price"),
    (lambda d: d["items"][0].update(quantity="x"), "body[0].data.items[0].quantity"),
    (lambda d: d["items"][0].update(discount=[]), "body[0].data.items[0].discount"),
    (lambda d: d.update(items={}), "body[0].data.items"),
    (lambda d: d.update(extras="x"), "body[0].data.extras"),
    (lambda d: d.update(items=[{"name": "x", "price": 1, "quantity": 1}] * 1001), "body[0].data.items"),
])
def test_receipt_rejections_name_the_field(mutate: Any, field: str) -> None:
    env = receipt_env()
    mutate(env["data"])
    with pytest.raises(BadInput) as err:
        cloud_wire.parse_receipts(body(env))
    assert err.value.field == field


@pytest.mark.parametrize(("raw", "field"), [
    (b"", "body"), (b"[1]", "body[0]"), (b'{"data": 5}', "body[0].data"), (b'{"a": 1,}', "body"),
])
def test_malformed_receipt_bodies(raw: bytes, field: str) -> None:
    with pytest.raises(BadInput) as err:
        cloud_wire.parse_receipts(raw)
    assert err.value.field == field


# ------------------------------------------------------------------ documents (v1 and REST-v2)


def v1_doc(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "uuid": "d-1", "type": "PAYBACK", "deviceUuid": "dev-1", "storeUuid": "st-1", "number": 5,
        "sessionNumber": 3, "closeDate": "2026-01-10T09:00:00.000Z",
        "transactions": [
            {"type": "DOCUMENT_OPEN", "baseDocumentUUID": "sale-1"},
            {"type": "REGISTER_POSITION", "commodityUuid": "c-1", "commodityCode": "7",
             "commodityName": "Tea", "price": -100, "quantity": -2, "sum": -200, "resultSum": -150},
            {"type": "REGISTER_POSITION", "commodityName": "Bun", "price": 30, "quantity": 1, "sum": 30},
            {"type": "DOCUMENT_CLOSE_FPRINT", "receiptNumber": 77},
            {"type": "SOMETHING_ELSE", "price": "not read"},
        ],
    }
    doc.update(kw)
    return doc


def test_v1_document_field_by_field() -> None:
    [doc] = cloud_wire.parse_documents(body(v1_doc()))
    assert doc == CloudDoc(
        doc_id="d-1", doc_type="PAYBACK", receipt_kind="refund", ignored_reason="", device_id="dev-1",
        store_id="st-1", number="77", session="3", occurred_at=datetime(2026, 1, 10, 9, tzinfo=UTC),
        base_doc_id="sale-1", extras={},
        items=(CloudItem("c-1", "7", "Tea", 10000, 2000, 20000, 5000),  # discount = sum - resultSum
               CloudItem("", "", "Bun", 3000, 1000, 3000, 0)),  # no resultSum: no discount
    )


def test_v1_number_falls_back_to_the_document_number() -> None:
    doc = v1_doc()
    doc["transactions"] = doc["transactions"][:3]
    assert cloud_wire.parse_documents(body(doc))[0].number == "5"


def test_v1_trailing_commas_are_tolerated_outside_strings() -> None:
    text = json.dumps(v1_doc(extras={"note": "a,}"})).replace('"sum": 30}', '"sum": 30,}').replace(
        '"price": "not read"}]', '"price": "not read"},]')
    assert text.count(",}") == 2 and text.count(",]") == 1
    [doc] = cloud_wire.parse_documents(text.encode())
    assert doc.items[1].name == "Bun" and doc.extras == {"note": "a,}"}


def test_rest_v2_document() -> None:
    doc = {"id": "d-2", "version": "V2", "type": "SELL", "device_id": "dev-2", "store_id": "st-2",
           "number": "9", "session_number": "4", "close_date": "2026-01-10T10:00:00+03:00",
           "body": {"base_document_id": "b-1",
                    "positions": [{"product_id": "p-1", "code": "5", "product_name": "Coffee", "price": 150,
                                   "quantity": 3, "sum": 450, "result_sum": 400},
                                  {"name": "Water", "price": 50, "quantity": 1, "sum": 50}]}}
    [parsed] = cloud_wire.parse_documents(body(doc))
    assert parsed == CloudDoc(
        doc_id="d-2", doc_type="SELL", receipt_kind="sale", ignored_reason="", device_id="dev-2",
        store_id="st-2", number="9", session="4", occurred_at=datetime(2026, 1, 10, 10, tzinfo=MSK),
        base_doc_id="b-1", extras={},
        items=(CloudItem("p-1", "5", "Coffee", 15000, 3000, 45000, 5000),
               CloudItem("", "", "Water", 5000, 1000, 5000, 0)),
    )


def test_rest_v2_is_recognised_by_its_body_and_base_id_may_sit_outside_it() -> None:
    doc = {"id": "d-3", "type": "PAYBACK", "base_document_id": "b-9", "body": {}}
    [parsed] = cloud_wire.parse_documents(body(doc))
    assert (parsed.receipt_kind, parsed.base_doc_id, parsed.items, parsed.occurred_at) == (
        "refund", "b-9", (), None)


def test_a_result_sum_above_the_sum_is_no_negative_discount() -> None:
    doc = v1_doc()
    doc["transactions"] = [{"type": "REGISTER_POSITION", "commodityName": "X", "price": 10, "quantity": 1,
                            "sum": 10, "resultSum": 12}]
    assert cloud_wire.parse_documents(body(doc))[0].items[0].discount == 0


@pytest.mark.parametrize(("doc", "field"), [
    (v1_doc(uuid=None), "body[0].uuid"),
    (v1_doc(type=None), "body[0].type"),
    (v1_doc(transactions=[5]), "body[0].transactions[0]"),
    (v1_doc(transactions=[{"type": "REGISTER_POSITION", "price": 1, "quantity": 1, "sum": "a"}]),
     "body[0].transactions[0].sum"),
    (v1_doc(transactions=[{"type": "REGISTER_POSITION", "price": 1, "quantity": 1, "sum": 1}] * 1001),
     "body[0].transactions"),
    ({"id": "x", "type": "SELL", "body": {"positions": [{"price": 1, "quantity": None, "sum": 1}]}},
     "body[0].body.positions[0].quantity"),
    ({"type": "SELL", "body": {}}, "body[0].id"),
])
def test_document_rejections_name_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(BadInput) as err:
        cloud_wire.parse_documents(body(doc))
    assert err.value.field == field


# ------------------------------------------------------------------ user/verify


def test_user_verify() -> None:
    assert cloud_wire.parse_user_verify(body({"userUuid": "01-1", "username": "u", "password": "p"})) == (
        cloud_wire.VerifyRequest("01-1"))
    assert cloud_wire.parse_user_verify(body({"userUuid": 12345})).user_uuid == "12345"


@pytest.mark.parametrize(("raw", "field"), [
    (body({}), "userUuid"), (body({"userUuid": ""}), "userUuid"), (body({"userUuid": "u" * 129}), "userUuid"),
    (body([{"userUuid": "u"}]), "body"), (b"nope", "body"),
])
def test_user_verify_rejections(raw: bytes, field: str) -> None:
    with pytest.raises(BadInput) as err:
        cloud_wire.parse_user_verify(raw)
    assert err.value.field == field


def test_a_negative_figure_is_refused_in_a_sale_and_a_magnitude_in_a_refund() -> None:
    for key, value in (("price", -89.9), ("quantity", -1), ("discount", -10)):
        sale = receipt_env()
        sale["data"]["items"][0][key] = value
        with pytest.raises(BadInput, match="must not be negative in a sale") as info:
            cloud_wire.parse_receipts(body(sale))
        assert info.value.field == f"body[0].data.items[0].{key}"
    refund = receipt_env(type="PAYBACK")
    refund["data"]["items"][0].update(price="-89.90", quantity=-2)
    [doc] = cloud_wire.parse_receipts(body(refund))
    assert (doc.items[0].price, doc.items[0].qty_milli, doc.items[0].amount) == (8990, 2000, 17980)
