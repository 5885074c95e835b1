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
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.poster.config import Config
from drivers.poster.driver import PosterDriver, create
from gateway.driver import CustomerInfo
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
    assert len(ctx.calcs) == 3 and ctx.submits == []  # without a card: asked for the register's binding
    ctx.calc_error = None
    assert await post(client, "/pos-event", p.before_close(card=None), APP) == (200, {"bonus": 0})


async def test_guest_popup_prices_the_order_without_redeeming(client: Any, ctx: FakeContext) -> None:
    ctx.calc = lambda r: calc_result(r, points_to_accrue=17, max_points=232, balance=480, display_name="Анна")
    icon = p.pos_event("applicationIconClicked", {"place": "order", "order": p.order()}, redeem="max")
    assert await post(client, "/pos-event", icon, APP) == (200, {
        "found": True, "name": "Анна", "balance": 480, "offline": False, "earn": 17, "spend": 232})
    assert [(c.redeem_points, c.redeem_max, c.customer and c.customer.value) for c in ctx.calcs] == [
        (0, False, "2000012345")]  # a preview: asks for no redemption whatever the app asked
    ctx.calc = lambda r: calc_result(r, customer_found=False, balance=None)
    assert (await post(client, "/pos-event", icon, APP))[1] == {
        "found": False, "name": "", "balance": None, "offline": False}
    assert ctx.submits == []


async def test_guest_popup_without_an_order_or_with_the_core_away_asks_identify(
    client: Any, ctx: FakeContext
) -> None:
    ctx.known["2000012345"] = CustomerInfo("c1", "Анна", "", 480, False)
    no_order = p.pos_event("applicationIconClicked", {"place": "functions"})
    assert (await post(client, "/pos-event", no_order, APP))[1] == {
        "found": True, "name": "Анна", "balance": 480, "offline": False}
    ctx.calc_error = CoreUnavailable("down")
    with_order = p.pos_event("applicationIconClicked", {"place": "order", "order": p.order()})
    assert (await post(client, "/pos-event", with_order, APP))[1]["balance"] == 480
    nobody = p.pos_event("applicationIconClicked", {"place": "order", "order": p.order()}, card=None)
    assert (await post(client, "/pos-event", nobody, APP))[1] == {
        "found": False, "name": "", "balance": None, "offline": False}
    assert len(ctx.calcs) == 1 and ctx.counts["identify"] == 2


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


# Every entity of Poster's webhook list (docs: web/webhooks), its four actions and "closed" (seen in
# captured traffic), and the shapes ``data`` comes in: absent, the documented objects (client_ewallet,
# stock, application, a transaction's history holding JSON strings), and what is not an object.
ENTITIES = ("transaction", "incoming_order", "product", "dish", "category", "prepack", "ingredient",
            "workshop", "ingredients_category", "client", "client_payed_sum", "clients_group", "promotion",
            "promotion_prize", "client_ewallet", "storage", "stock", "supply", "book_transaction",
            "cash_shift_transaction", "spot", "register", "waiter", "configs", "application")
ACTIONS = ("added", "changed", "removed", "transformed", "closed")
HISTORY = json.dumps({"transactions_history": {"type_history": "additem",
                                                "value_text": json.dumps({"a": 1})}})
DATA_SHAPES: tuple[str | int | None, ...] = (
    None, "{}", '{"value_relative":-150,"value_absolute":2350}',
    '{"type":2,"element_id":12,"storage_id":1,"value_relative":-2,"value_absolute":40}',
    '{"user_id":4,"access_token":"904512:abc"}', HISTORY, json.dumps(HISTORY), "[1,2]", '"text"', "5", "null",
    "not json at all", "", 5,
)


async def test_every_signed_webhook_is_acknowledged_and_only_a_removal_is_stored(
    client: Any, ctx: FakeContext
) -> None:
    now = str(int(time.time()))
    sent = 0
    for e, entity in enumerate(ENTITIES):
        for d, data in enumerate(DATA_SHAPES):
            action = ACTIONS[(e + d) % len(ACTIONS)]
            hook = p.webhook(70_000 + e, action, data=data, time=now, obj=entity)
            body = json.dumps(hook).encode()
            if d % 4 == 3:  # some proxies forward it form-encoded
                body = urlencode({k: str(v) for k, v in hook.items()}).encode()
            answer = await post(client, "/webhook", body, {})
            assert answer == (200, {"status": "accept"}), (entity, data, action)
            sent += 1
    assert sent == len(ENTITIES) * len(DATA_SHAPES)
    removals = {k for k in ctx.stored if k.endswith(":removed")}
    assert set(ctx.stored) == removals == {"poster:coffee-demo:tx:70000:removed"}  # transaction/removed only
    for data in DATA_SHAPES:  # a removal is applied whatever its data says, once
        hook = p.webhook(58031, "removed", data=data, time=now)
        assert await post(client, "/webhook", json.dumps(hook).encode(), {}) == (200, {"status": "accept"})
    assert len(ctx.stored) == 2 and "poster:coffee-demo:tx:58031:removed" in ctx.stored


def _tampered(field: str) -> dict[str, Any]:
    hook = p.webhook(action="changed", data='{"a":1}', time=str(int(time.time())))
    other = {"object_id": 58032, "data": '{"a":2}', "verify": "f" * 32, "time": str(int(time.time()) - 1)}
    hook[field] = other.get(field, str(hook[field]) + "x")
    return hook


REFUSED: dict[str, tuple[bytes, int]] = {
    **{f"tampered {f}": (json.dumps(_tampered(f)).encode(), 403)
       for f in ("account", "object", "object_id", "action", "data", "time", "verify")},
    "wrong secret": (json.dumps(p.webhook(secret="other", time=str(int(time.time())))).encode(), 403),
    "stale time": (json.dumps(p.webhook(time=str(int(time.time()) - 4 * 86_400))).encode(), 403),
    "time from the future": (json.dumps(p.webhook(time=str(int(time.time()) + 4 * 86_400))).encode(), 403),
    "time not a number": (json.dumps(p.webhook(time="yesterday")).encode(), 403),
    "no verify": (json.dumps({**p.webhook(time=str(int(time.time()))), "verify": ""}).encode(), 403),
    "not JSON nor a form": (b"\xff\xfe{", 400),
    "a JSON array": (b"[1,2]", 400),
    "empty": (b"", 400),
    "no object": (json.dumps({k: v for k, v in p.webhook().items() if k != "object"}).encode(), 400),
    "data an unsigned object": (json.dumps({**p.webhook(), "data": {"a": 1}}).encode(), 400),
    "data a fraction": (b'{"account":"coffee-demo","object":"stock","object_id":1,"action":"changed",'
                        b'"time":"1767254466","verify":"' + b"0" * 32 + b'","data":1.5}', 400),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_webhook_failing_its_signature_or_unreadable_is_refused(
    client: Any, ctx: FakeContext, case: str
) -> None:
    body, status = REFUSED[case]
    got, answer = await post(client, "/webhook", body, {})
    assert (got, answer["status"]) == (status, "error"), answer
    assert ctx.submits == [] and ctx.state.keep_s == {}


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
