"""gateway.http_edge: JSON with Decimal, size- and time-limited body reads, constant-time token checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from gateway import http_edge
from gateway.errors import BadInput, StorageError
from tests.gateway.fakes import FakeContext


def test_loads_keeps_money_exact() -> None:
    data = http_edge.loads(b'{"price": 199.90, "qty": 2, "nested": [0.1]}')
    assert data == {"price": Decimal("199.90"), "qty": 2, "nested": [Decimal("0.1")]}
    assert isinstance(data, dict) and isinstance(data["qty"], int)


@pytest.mark.parametrize("body", [b"\xff\xfe", b"{", b"", b"[1,]", b"[" * 100_000])
def test_loads_refuses_malformed_input_as_bad_input(body: bytes) -> None:
    with pytest.raises(BadInput) as info:
        http_edge.loads(body)
    assert info.value.field == "body"


def test_loads_accepts_text() -> None:
    assert http_edge.loads('{"a": "б"}') == {"a": "б"}


def test_token_matches_any_configured_secret() -> None:
    secrets: list[SecretStr | str] = [SecretStr("alpha"), "beta"]
    assert http_edge.token_matches("alpha", secrets)
    assert http_edge.token_matches("beta", secrets)
    assert not http_edge.token_matches("gamma", secrets)
    assert not http_edge.token_matches("alph", secrets)


def test_empty_secret_never_matches() -> None:
    assert not http_edge.token_matches("", [SecretStr(""), ""])
    assert not http_edge.token_matches("", [])


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("abc", "abc"), ("", ""), ("Basic abc", "Basic abc"),
])
def test_bearer_prefix_is_optional(header: str, token: str) -> None:
    assert http_edge.bearer(header) == token


# -- read_body over a real socket ---------------------------------------------------------------


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        try:
            body = await http_edge.read_body(request, limit=1024, timeout_s=0.3)
        except http_edge.BodyTooLarge as exc:
            return web.Response(status=413, text=str(exc.limit))
        except TimeoutError:
            return web.Response(status=408)
        return web.Response(body=body)

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


async def test_read_body_returns_the_body(echo_url: str) -> None:
    async with aiohttp.ClientSession() as s, s.post(echo_url, data=b"x" * 1024) as resp:
        assert resp.status == 200
        assert await resp.read() == b"x" * 1024


async def test_read_body_refuses_a_declared_oversize(echo_url: str) -> None:
    async with aiohttp.ClientSession() as s, s.post(echo_url, data=b"x" * 1025) as resp:
        assert resp.status == 413
        assert await resp.text() == "1024"


async def test_read_body_refuses_an_undeclared_oversize(echo_url: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length
        for _ in range(5):
            yield b"y" * 400

    async with aiohttp.ClientSession() as s, s.post(echo_url, data=chunks()) as resp:
        assert resp.status == 413


async def test_read_body_gives_up_on_a_slow_sender(echo_url: str) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b"{"
        await asyncio.sleep(1.0)  # the sender stalls longer than the 0.3 s read budget
        yield b"}"

    async with aiohttp.ClientSession() as s, s.post(echo_url, data=trickle()) as resp:
        assert resp.status == 408


async def test_guard_refuses_in_the_vendors_shape_and_counts() -> None:
    ctx = FakeContext("vendor", outbox=None)
    refusals = http_edge.Refusals(
        unauthorized=b'{"e":"who"}', timeout=b'{"e":"slow"}', too_large=lambda n: str(n).encode(),
        bad_input=lambda exc: exc.field.encode(), not_stored=b'{"e":"resend"}',
    )

    async def inner(c: object, body: bytes) -> web.Response:
        if body == b"bad":
            raise BadInput("no", "lines")
        if body == b"disk":
            raise StorageError("disk full")
        return web.Response(body=b"ok:" + body)

    handler = http_edge.guard(ctx, inner, refusals=refusals, limit=16, timeout_s=5,  # type: ignore[arg-type]
                              authorized=lambda r: r.headers.get("X-Key") == "k")
    app = web.Application()
    app.router.add_post("/x", handler)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        async def post(body: bytes, key: str = "k") -> tuple[int, bytes]:
            async with client.post("/x", data=body, headers={"X-Key": key}) as resp:
                return resp.status, await resp.read()

        assert await post(b"hi") == (200, b"ok:hi")
        assert await post(b"hi", key="nope") == (401, b'{"e":"who"}')
        assert await post(b"x" * 17) == (413, b"16")
        assert await post(b"bad") == (400, b"lines")
        assert await post(b"disk") == (503, b'{"e":"resend"}')
    assert ctx.counts["requests"] == 5 and ctx.counts["auth_failed"] == 1
    assert ctx.counts["bad_input"] == 1 and ctx.counts["storage_error"] == 1
