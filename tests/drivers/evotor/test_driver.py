"""Evotor routes over a real socket with a fake DriverContext: auth, 4xx shapes, dedup, ack-after-submit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.evotor.driver import create
from gateway.errors import CoreUnavailable
from gateway.receipt import CustomerId, IdKind
from tests.drivers.evotor import payloads
from tests.drivers.fake_context import FakeContext, calc_result, serve

PLUGIN = {"X-Gateway-Token": "plug-tok"}
CLOUD = {"Authorization": "Bearer user-tok", "X-Evotor-User-Id": "01-000000004455667"}
VENDOR = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "vendor" / "evotor"


@pytest.fixture
def ctx() -> FakeContext:
    return FakeContext("evotor")


@pytest.fixture
async def client(ctx: FakeContext) -> AsyncIterator[Any]:
    driver = create(
        {
            "pairing_tokens": ["plug-tok"],
            "cloud_user_token": "user-tok",
            "cloud_app_token": "app-tok",
            "max_body_bytes": 16384,
        }
    )
    async with serve(driver, ctx) as c:
        yield c


async def post(
    client: Any, path: str, payload: object, headers: dict[str, str], method: str = "POST"
) -> tuple[int, Any]:
    data = payload if isinstance(payload, bytes) else payloads.body(payload)  # type: ignore[arg-type]
    resp = await client.request(method, f"/v1/evotor{path}", data=data, headers=headers)
    return resp.status, await resp.json()


async def test_calc_answers_with_the_sdk_result(client: Any, ctx: FakeContext) -> None:
    ctx.calc = lambda r: calc_result(r, {payloads.P1: 3600, payloads.P2: 5000}, redeemed_points=50)
    status, body = await post(client, "/event", payloads.calc(), PLUGIN)
    assert status == 200 and body["callback"] == "onResult"
    assert body["result"]["discount"] == "86.00"
    assert len(ctx.calcs) == 1 and not ctx.submits


@pytest.mark.parametrize("error", [CoreUnavailable("down")])
async def test_calc_never_blocks_the_sale(client: Any, ctx: FakeContext, error: Exception) -> None:
    ctx.calc_error = error  # type: ignore[assignment]
    status, body = await post(client, "/event", payloads.calc(), PLUGIN)
    assert (status, body) == (200, {"callback": "skip"})


async def test_calc_on_a_payback_skips_without_asking(client: Any, ctx: FakeContext) -> None:
    payload = payloads.calc(action="evo.v2.receipt.payback.receiptDiscount")
    assert await post(client, "/event", payload, PLUGIN) == (200, {"callback": "skip"})
    assert ctx.calcs == []


async def test_calc_without_customer_asks_the_pipeline_for_a_bound_one(client: Any, ctx: FakeContext) -> None:
    assert await post(client, "/event", payloads.calc(card=None), PLUGIN) == (200, {"callback": "skip"})
    assert [r.customer for r in ctx.calcs] == [None]  # nobody bound: skip
    bound = CustomerId(IdKind.CARD, "2000000000015")
    ctx.calc = lambda r: calc_result(r, {ln.line_id: 500 for ln in r.lines}, customer=bound)
    status, body = await post(client, "/event", payloads.calc(card=None), PLUGIN)
    assert status == 200 and body["callback"] != "skip"  # the scanner's customer gets the discount
    assert "*0015" in json.dumps(body, ensure_ascii=False)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/event", {}),
        ("/event", {"X-Gateway-Token": "wrong"}),
        ("/event", {"Authorization": "Bearer plug-tok"}),
        ("/cloud/api/v2/receipts", {}),
        ("/cloud/api/v2/receipts", {"Authorization": "Bearer plug-tok"}),
        ("/cloud/api/v1/user/verify", {"Authorization": "user-tok"}),
    ],
)
async def test_auth_failures_are_401_in_evotor_shape_and_store_nothing(
    client: Any, ctx: FakeContext, path: str, headers: dict[str, str]
) -> None:
    status, body = await post(client, path, payloads.close(), headers)
    assert status == 401 and body == {
        "errors": [{"code": 1002, "reason": "invalid", "subject": "Authorization"}]
    }
    assert ctx.submits == [] and ctx.counts["auth_failed"] == 1


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"action":"nope"}', "не json".encode(), b"\xff\xfe"])
async def test_bad_input_is_400_in_evotor_shape_with_nothing_submitted(
    client: Any, ctx: FakeContext, data: bytes
) -> None:
    status, body = await post(client, "/event", data, PLUGIN)
    assert status == 400 and body["errors"][0]["code"] == 2003 and body["errors"][0]["reason"] == "incorrect"
    assert ctx.submits == []


async def test_oversized_body_is_413(client: Any, ctx: FakeContext) -> None:
    status, body = await post(client, "/event", b"{" + b" " * 20000 + b"}", PLUGIN)
    assert status == 413 and body["errors"][0]["reason"] == "too large" and ctx.submits == []


async def test_close_twice_is_stored_once_and_acked_twice(client: Any, ctx: FakeContext) -> None:
    first = await post(client, "/event", payloads.close(), PLUGIN)
    second = await post(client, "/event", payloads.close(), PLUGIN)
    assert first == (200, {"accepted": True, "duplicate": False})
    assert second == (200, {"accepted": True, "duplicate": True})
    assert len(ctx.submits) == 2 and ctx.submits[0].key == ctx.submits[1].key and len(ctx.stored) == 1


async def test_cloud_redelivery_with_a_new_envelope_id_dedupes_with_the_plugin(
    client: Any, ctx: FakeContext
) -> None:
    await post(client, "/event", payloads.close(), PLUGIN)
    cloud = {
        "id": "env-2",
        "timestamp": 1767251112000,
        "userId": "01-1",
        "type": "ReceiptCreated",
        "version": 2,
        "data": {
            "id": payloads.RECEIPT,
            "type": "SELL",
            "storeId": payloads.STORE,
            "dateTime": "2026-01-01T07:05:10.000Z",
            "items": [{"name": "Cappuccino", "quantity": 2, "price": 180, "sumPrice": 324}],
        },
    }
    for envelope_id in ("env-2", "env-3"):
        cloud["id"] = envelope_id
        status, body = await post(client, "/cloud/api/v2/receipts", [cloud], CLOUD)
        assert (status, body["duplicate"]) == (200, True)
    assert len(ctx.stored) == 1


async def test_storage_failure_is_503_never_200(client: Any, ctx: FakeContext) -> None:
    ctx.storage_fails = True
    status, body = await post(client, "/event", payloads.close(), PLUGIN)
    assert status == 503 and body["errors"][0]["code"] == 5001 and ctx.stored == {}


async def test_ack_only_after_submit_returned(client: Any, ctx: FakeContext) -> None:
    ctx.gate = asyncio.Event()
    request = asyncio.create_task(post(client, "/event", payloads.close(), PLUGIN), name="close")
    await asyncio.wait_for(ctx.submit_entered.wait(), 5)
    done, _ = await asyncio.wait({request}, timeout=0.2)
    assert not done, "answered before the durable write returned"
    ctx.gate.set()
    assert (await request)[0] == 200


async def test_vendor_documents_put_with_trailing_commas(client: Any, ctx: FakeContext) -> None:
    path = VENDOR / "cloud-v1-document-sell.txt"
    if not path.exists():
        pytest.skip(f"vendor fixtures absent: {path}")
    resp = await client.put(
        "/v1/evotor/cloud/api/v1/inventories/stores/s-1/documents",
        data=path.read_bytes(),
        headers={"Authorization": "user-tok"},
    )  # the prefix-less form receivers accept
    assert resp.status == 200 and list(ctx.stored) == ["evotor:doc:175d8ae9-79db-4588-a65a-8f0613e2d0ff"]


async def test_user_verify_returns_the_user_token(client: Any) -> None:
    status, body = await post(
        client,
        "/cloud/api/v1/user/verify",
        {"userUuid": "01-000000000000001", "username": "u", "password": "p"},
        {"Authorization": "app-tok"},
    )
    assert (status, body) == (
        200,
        {"userUuid": "01-000000000000001", "hasBilling": False, "token": "user-tok"},
    )


async def test_ignored_documents_are_acknowledged_without_storing(client: Any, ctx: FakeContext) -> None:
    doc = {"type": "OPEN_SESSION", "id": "0", "version": "V2", "body": {}}
    status, body = await post(client, "/cloud/api/v1/inventories/stores/s/documents", doc, CLOUD, "PUT")
    assert status == 200 and ctx.submits == []
    assert body == {"accepted": True, "duplicate": False,
                    "ignored": "document type 'OPEN_SESSION' carries no sale or refund"}


def test_sample_toml_matches_the_config_model() -> None:
    import tomllib

    from drivers.evotor.config import Config

    section = tomllib.loads((Path(create.__code__.co_filename).parent / "sample.toml").read_text())[
        "drivers"
    ]["evotor"]
    section.pop("enabled")
    assert set(section) == set(Config.model_fields)
    Config.model_validate(section)
