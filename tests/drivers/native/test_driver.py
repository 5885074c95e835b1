"""The native driver over a real socket: answers, auth, hostile input -> clear 4xx, nothing stored.

The driver runs inside the real server (gateway.server.build_app) with a real SQLite outbox
and a fake pipeline context; every answer is checked against the served OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from drivers.native.config import Config
from drivers.native.driver import NativeDriver, openapi_document
from gateway.driver import CustomerInfo
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.server import MountedDriver, build_app
from tests.drivers.fake_context import FakeContext, calc_result

KEY = "till-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
LINE = {"line_id": "1", "sku": "MILK", "name": "Milk", "price": 10000, "qty_milli": 1000, "amount": 10000}
CALC = {"register_id": "R1", "lines": [LINE], "customer": {"phone": "+79001234567"}}
SALE = CALC | {"receipt_number": "42", "shift": "7", "fiscal_sign": "FS", "redeemed_points": 0}
REFUND = {"register_id": "R1", "refund_id": "rf1", "sale": {"receipt_number": "42", "shift": "7"},
          "full": True}
CANCEL = {"register_id": "R1", "cancel_id": "c1", "sale": {"receipt_number": "42", "shift": "7"}}


@dataclass
class Env:
    base: str
    session: aiohttp.ClientSession
    ctx: FakeContext
    outbox: Outbox
    metrics: Metrics

    async def post(self, path: str, body: Any, *, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} | AUTH | (headers or {})
        async with self.session.post(f"{self.base}/v1/native/{path}", data=data, headers=hdrs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def pending(self) -> int:
        stats = await self.outbox.stats()
        return int(stats.pending)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    metrics = Metrics()
    outbox = await Outbox.open(tmp_path / "outbox.db", metrics=metrics)
    ctx = FakeContext("native", outbox)
    driver = NativeDriver(Config.model_validate({"api_keys": [KEY], "max_body_bytes": 64 * 1024}))
    app = build_app(outbox=outbox, metrics=metrics, drivers=[MountedDriver("native", driver, ctx)],
                    core_state=lambda: "closed")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield Env(f"http://127.0.0.1:{port}", session, ctx, outbox, metrics)
    await runner.cleanup()
    await outbox.close()


def check_schema(name: str, body: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = openapi_document()
    schema = dict(doc) | {"$ref": f"#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema).validate(body)


async def test_calculate_and_identify(env: Env) -> None:
    env.ctx.calc = lambda r: calc_result(r, {"1": 1000}, customer_id="cus-1", token="c1.t.m")
    env.ctx.known["777"] = CustomerInfo("cus-1", "Anna K.", "base", 100, False)
    status, body = await env.post("calculate", CALC)
    assert status == 200
    check_schema("CalculateResponse", body)
    assert body["lines"] == [{"line_id": "1", "discount": 1000, "paid": 9000}]
    assert body["payable"] == 9000 and body["customer"]["customer_id"] == "cus-1"
    assert env.ctx.calcs[0].driver == "native"
    status, body = await env.post("identify", {"customer": {"card": "777"}})
    assert status == 200 and body["found"] is True
    check_schema("IdentifyResponse", body)
    status, body = await env.post("identify", {"customer": {"card": "unknown"}})
    assert (status, body["found"]) == (200, False)
    check_schema("IdentifyResponse", body)
    assert await env.pending() == 0  # calculate and identify store nothing


async def test_sale_stored_once_then_duplicate(env: Env) -> None:
    status, body = await env.post("sales", SALE)
    assert (status, body) == (200, {"key": "native:R1:7:42:FS", "duplicate": False})
    check_schema("Ack", body)
    status, body = await env.post("sales", SALE)
    assert (status, body) == (200, {"key": "native:R1:7:42:FS", "duplicate": True})
    assert await env.pending() == 1
    assert env.ctx.counts["duplicate"] == 1


async def test_refund_and_cancel(env: Env) -> None:
    assert await env.post("refunds", REFUND) == (200, {"key": "native:R1:refund:rf1", "duplicate": False})
    assert await env.post("cancels", CANCEL) == (200, {"key": "native:R1:cancel:c1", "duplicate": False})
    assert await env.pending() == 2


def _with(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("sales", b"{not json", None),
        ("sales", b"[]", None),
        ("sales", b"", None),
        ("sales", _with(SALE, ("lines", 0, "amount"), 100.5), "lines[0].amount"),
        ("sales", _with(SALE, ("lines", 0, "amount"), "100"), "lines[0].amount"),
        ("sales", _with(SALE, ("lines", 0, "amount"), -100), "lines[0].amount"),
        ("sales", _with(SALE, ("lines", 0, "amount"), 10**19), "lines[0].amount"),
        ("sales", _with(SALE, ("lines", 0, "qty_milli"), True), "lines[0].qty_milli"),
        ("sales", _with(SALE, ("redeemed_points",), -1), "redeemed_points"),
        ("sales", {k: v for k, v in SALE.items() if k != "receipt_number"}, "receipt_number"),
        ("sales", {k: v for k, v in SALE.items() if k != "lines"}, "lines"),
        ("refunds", {k: v for k, v in REFUND.items() if k != "refund_id"}, "refund_id"),
        ("refunds", _with(REFUND, ("full",), "yes"), "full"),
        ("cancels", {"register_id": "R1"}, "sale"),
        ("calculate", _with(CALC, ("lines", 0, "price"), 1e30), "lines[0].price"),
        ("identify", {"customer": {"phone": 79001234567}}, "customer.phone"),
    ],
)
async def test_bad_input_is_400_and_nothing_stored(env: Env, path: str, body: Any, field: str | None) -> None:
    status, answer = await env.post(path, body)
    assert status == 400, answer
    check_schema("Error", answer)
    assert answer["error"]["code"] == "BAD_REQUEST"
    if field is not None:
        assert answer["error"]["field"] == field
    assert answer["error"]["message"]
    assert await env.pending() == 0
    assert (await env.post("calculate", CALC))[0] == 200  # still serving


async def test_oversized_body_is_413(env: Env) -> None:
    huge = b'{"register_id": "R1", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    status, answer = await env.post("sales", huge)
    assert status == 413 and answer["error"]["code"] == "PAYLOAD_TOO_LARGE"
    check_schema("Error", answer)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"register_id": "R1", "pad": "'
        for _ in range(200):
            yield b"x" * 1024
        yield b'"}'

    async with env.session.post(f"{env.base}/v1/native/sales", data=chunks(),
                                headers=AUTH | {"Content-Type": "application/json"}) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await env.pending() == 0
    assert (await env.post("calculate", CALC))[0] == 200


async def test_compressed_body_over_the_limit_is_413(env: Env) -> None:
    """Content-Length is the compressed size: the limit must hold for what it inflates to."""
    import zlib

    body = json.dumps(SALE | {"pad": "x" * (200 * 1024)}).encode()
    packed = zlib.compress(body)
    assert len(packed) < 64 * 1024 < len(body)
    hdrs = AUTH | {"Content-Type": "application/json", "Content-Encoding": "deflate"}
    async with env.session.post(f"{env.base}/v1/native/sales", data=packed, headers=hdrs) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await env.pending() == 0


async def test_body_of_exactly_the_limit_is_read(env: Env) -> None:
    body = json.dumps(SALE | {"pad": ""}).encode()
    body = body[:-3] + b'"' + b"x" * (64 * 1024 - len(body)) + b'"}'
    assert len(body) == 64 * 1024
    status, answer = await env.post("sales", body)
    assert status == 200 and answer["duplicate"] is False
    assert await env.pending() == 1


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dGlsbDprZXk=", "Bearer", f"Token {KEY}"])
async def test_auth_refused_401(env: Env, header: str | None) -> None:
    hdrs = {"Content-Type": "application/json"} | ({"Authorization": header} if header else {})
    async with env.session.post(f"{env.base}/v1/native/sales", data=json.dumps(SALE), headers=hdrs) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body = await resp.json()
    assert body["error"]["code"] == "UNAUTHORIZED"
    check_schema("Error", body)
    assert await env.pending() == 0


async def test_wrong_content_type_is_415(env: Env) -> None:
    status, body = await env.post("sales", json.dumps(SALE).encode(), headers={"Content-Type": "text/plain"})
    assert (status, body["error"]["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert await env.pending() == 0


async def test_storage_error_is_503_not_200(env: Env) -> None:
    env.ctx.storage_fails = True
    status, body = await env.post("sales", SALE)
    assert (status, body["error"]["code"]) == (503, "STORAGE_UNAVAILABLE")
    check_schema("Error", body)


async def test_unknown_path_and_method_in_native_format(env: Env) -> None:
    status, body = await env.post("nope", {})
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
    async with env.session.get(f"{env.base}/v1/native/sales", headers=AUTH) as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_openapi_document_served_and_covers_every_route(env: Env) -> None:
    async with env.session.get(f"{env.base}/v1/native/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc == openapi_document()
    assert doc["openapi"].startswith("3.1")
    driver = NativeDriver(Config())
    routes = {(r.method.lower(), r.path) for r in driver.routes(env.ctx)}  # type: ignore[attr-defined]
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for status, answer in op["responses"].items():
                ref = answer["content"]["application/json"]["schema"].get("$ref", "")
                assert not ref or ref.split("/")[-1] in doc["components"]["schemas"], (path, status)
    jsonschema = pytest.importorskip("jsonschema")
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


async def test_http_requests_counted_per_driver_and_status(env: Env) -> None:
    await env.post("calculate", CALC)
    await env.post("calculate", b"{")
    counter = env.metrics.http_requests
    assert counter.labels(driver="native", status="2xx")._value.get() == 1
    assert counter.labels(driver="native", status="4xx")._value.get() == 1
