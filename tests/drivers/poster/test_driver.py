"""Poster routes over a real socket with a fake DriverContext: auth paths, answers, fuzzing over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.poster.config import Config
from drivers.poster.driver import PosterDriver, create
from gateway.errors import CoreUnavailable
from tests.drivers.fake_context import FakeContext, calc_result, serve
from tests.drivers.poster import payloads as p
from tests.drivers.poster.test_wire import json_values

OPTIONS = {"pairing_tokens": [p.TOKEN], "application_secret": p.SECRET}
APP = {"X-Gateway-Token": p.TOKEN}


@pytest.fixture
def ctx() -> FakeContext:
    return FakeContext("poster")


@pytest.fixture
async def client(ctx: FakeContext) -> AsyncIterator[Any]:
    async with serve(create(OPTIONS), ctx) as c:
        yield c


async def post(client: Any, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    resp = await client.post(f"/v1/poster{path}", data=body, headers=headers)
    return resp.status, await resp.json()


async def test_calc_gives_the_bonus_and_core_trouble_gives_zero(client: Any, ctx: FakeContext) -> None:
    ctx.calc = lambda r: calc_result(r, {"p12": 9000, "p40": 3000}, redeemed_points=120, token="c1.t.m")
    status, body = await post(client, "/pos-event", p.before_close(redeem=120), APP)
    assert status == 200 and body["bonus"] == 120.0 and body["extras"] == {"posgw": "c1.t.m"}
    ctx.calc_error = CoreUnavailable("down")
    assert await post(client, "/pos-event", p.before_close(), APP) == (200, {"bonus": 0})
    assert await post(client, "/pos-event", p.before_close(card=None), APP) == (200, {"bonus": 0})
    assert len(ctx.calcs) == 2 and ctx.submits == []


async def test_proxied_request_with_a_valid_signature(client: Any, ctx: FakeContext) -> None:
    body, when = p.after_close(), str(int(time.time()))
    url = str(client.make_url("/v1/poster/pos-event"))
    sig = hashlib.md5(url.encode() + body + when.encode() + p.SECRET.encode()).hexdigest()
    assert (await post(client, "/pos-event", body, {"X-Poster-Signature": sig, "X-Poster-Time": when}))[
        0
    ] == 200
    stale = str(int(time.time()) - 10 * 86400)
    sig = hashlib.md5(url.encode() + body + stale.encode() + p.SECRET.encode()).hexdigest()
    status, _ = await post(client, "/pos-event", body, {"X-Poster-Signature": sig, "X-Poster-Time": stale})
    assert status == 403 and len(ctx.stored) == 1


async def test_removed_webhook_links_to_the_synced_sale(client: Any, ctx: FakeContext) -> None:
    synced = json.loads(p.after_close())
    synced["data"]["order"]["orderName"] = 58031
    assert (await post(client, "/pos-event", json.dumps(synced).encode(), APP))[0] == 200
    hook = json.dumps(p.webhook(time=str(int(time.time())))).encode()
    for _ in range(2):  # Poster's redelivery
        assert await post(client, "/webhook", hook, {}) == (200, {"status": "accept"})
    refund = ctx.stored["poster:coffee-demo:tx:58031:removed"]
    assert refund.sale_key == "poster:coffee-demo:3:order:1767254400123" and len(ctx.stored) == 2
    assert ctx.state.keep_s == {"tx:coffee-demo:58031": 180 * 86_400}  # the link is forgotten in time


async def test_other_events_and_webhooks_are_acknowledged_without_storing(
    client: Any, ctx: FakeContext
) -> None:
    change = p.pos_event("orderProductChange", {"order": p.order(), "product": {"id": 3, "count": 0}})
    assert (await post(client, "/pos-event", change, APP))[1]["ignored"]
    hook = json.dumps(p.webhook(action="changed", data="{}", time=str(int(time.time())))).encode()
    assert await post(client, "/webhook", hook, {}) == (200, {"status": "accept"})
    assert (await client.options("/v1/poster/pos-event")).status == 204
    assert (await client.get("/v1/poster/webhook")).status == 200
    assert ctx.submits == []


def test_sample_toml_matches_the_config_model() -> None:
    section = tomllib.loads((Path(create.__code__.co_filename).parent / "sample.toml").read_text())
    options = section["drivers"]["poster"]
    options.pop("enabled")
    assert set(options) == set(Config.model_fields)
    Config.model_validate(options)


def test_fuzzed_webhooks_and_data_over_http_never_500_never_stored() -> None:
    loop = asyncio.new_event_loop()
    ctx = FakeContext("poster")

    async def start() -> TestClient[Any, Any]:
        ctx.stopping = asyncio.Event()
        from aiohttp import web

        sub = web.Application()
        sub.add_routes(PosterDriver(Config.model_validate(OPTIONS)).routes(cast(Any, ctx)))
        app = web.Application()
        app.add_subapp("/v1/poster", sub)
        c: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await c.start_server()
        return c

    c = loop.run_until_complete(start())

    async def send(path: str, body: bytes) -> int:
        resp = await c.post(f"/v1/poster{path}", data=body)
        await resp.read()
        return resp.status

    @settings(max_examples=120, deadline=None)
    @given(
        st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
        st.text(max_size=40) | json_values.map(json.dumps),
    )
    def check(body: bytes, data: str) -> None:
        signed = json.dumps(p.webhook(action="changed", data=data, time=str(int(time.time())))).encode()
        for path, payload in (("/webhook", body), ("/webhook", signed), ("/pos-event", body)):
            status = loop.run_until_complete(send(path, payload))
            assert status < 500, (path, payload, status)
        assert ctx.submits == []

    try:
        check()
    finally:
        loop.run_until_complete(c.close())
        loop.close()
