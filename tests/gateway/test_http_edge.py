"""gateway.http_edge: the guard (auth kinds, limits, refusals as data), error translation,
size- and time-limited body reads, constant-time token checks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from gateway import http_edge
from gateway.driver import CalcResult, Edge, Refusals
from gateway.errors import BadInput, CoreUnavailable, StorageError
from gateway.receipt import CustomerId, IdKind, Line, Receipt
from tests.drivers.fake_context import FakeContext


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



async def _raw_post(url: str, body: bytes, *, chunked: bool) -> bytes:
    """POST ``body`` in one write (head and body together: it has wholly arrived when the
    handler starts), chunked or with a Content-Length; the answer's status line and body."""
    host, port = url.split("/")[2].split(":")
    if chunked:
        head = b"Transfer-Encoding: chunked\r\n"
        payload = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:500], body[500:]) if part)
        payload += b"0\r\n\r\n"
    else:
        head, payload = b"Content-Length: %d\r\n" % len(body), body
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n" + payload)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    status, _, rest = answer.partition(b"\r\n")
    return status.split(b" ")[1] + b" " + rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("chunked", [True, False])
async def test_read_body_takes_a_body_that_already_arrived_within_the_same_limits(
        echo_url: str, chunked: bool) -> None:
    assert await _raw_post(echo_url, b"z" * 1000, chunked=chunked) == b"200 " + b"z" * 1000
    assert await _raw_post(echo_url, b"", chunked=chunked) == b"200 "
    if chunked:  # no Content-Length to refuse it by: refused by what arrived
        assert await _raw_post(echo_url, b"z" * 1025, chunked=True) == b"413 1024"

REFUSALS = Refusals(
    unauthorized=lambda why: f'{{"e":"{why}"}}'.encode(), timeout=b'{"e":"slow"}',
    too_large=lambda n: str(n).encode(), bad_input=lambda exc: exc.field.encode(),
    not_stored=b'{"e":"resend"}', other=lambda status, code, message: f"{status}:{code}".encode(),
    challenge='Bearer realm="t"',
)


async def _inner(c: object, body: bytes) -> web.Response:
    if body == b"bad":
        raise BadInput("no", "lines")
    if body == b"disk":
        raise StorageError("disk full")
    return web.Response(body=b"ok:" + body)


@asynccontextmanager
async def _guarded(ctx: FakeContext, auth: http_edge.Auth | None, **kw: Any) -> AsyncIterator[TestClient]:
    edge = Edge(REFUSALS, max_body_bytes=16, read_timeout_s=0.3)
    app = web.Application()
    app.router.add_post("/x", http_edge.guard(ctx, edge, _inner, auth=auth, **kw))  # type: ignore[arg-type]
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        yield client


async def test_guard_refuses_in_the_vendors_shape_and_counts() -> None:
    ctx = FakeContext("vendor")
    async with _guarded(ctx, http_edge.HeaderToken(["k"], "X-Key")) as client:
        async def post(body: Any, key: str = "k") -> tuple[int, bytes, str]:
            async with client.post("/x", data=body, headers={"X-Key": key}) as resp:
                return resp.status, await resp.read(), resp.headers.get("WWW-Authenticate", "")

        async def trickle() -> AsyncIterator[bytes]:
            yield b"h"
            await asyncio.sleep(1.0)  # longer than the edge's 0.3 s read limit
            yield b"i"

        assert await post(b"hi") == (200, b"ok:hi", "")
        assert await post(b"hi", key="nope") == (401, b'{"e":"wrong_token"}', 'Bearer realm="t"')
        assert await post(b"hi", key="") == (401, b'{"e":"no_token"}', 'Bearer realm="t"')
        assert await post(b"x" * 17) == (413, b"16", "")
        assert await post(trickle()) == (408, b'{"e":"slow"}', "")
        assert await post(b"bad") == (400, b"lines", "")
        assert await post(b"disk") == (503, b'{"e":"resend"}', "")
    assert ctx.counts["requests"] == 7 and ctx.counts["auth_failed"] == 2
    assert ctx.counts["bad_input"] == 3 and ctx.counts["storage_error"] == 1


async def test_guard_refuses_another_content_type_with_415() -> None:
    ctx = FakeContext("vendor")
    async with _guarded(ctx, None, content_types=("application/json",)) as client:
        async with client.post("/x", data=b"{}", headers={"Content-Type": "text/plain"}) as resp:
            assert (resp.status, await resp.read()) == (415, b"415:UNSUPPORTED_MEDIA_TYPE")
        async with client.post("/x", data=b"{}", headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 200


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_auth_checks_user_and_password() -> None:
    ctx = FakeContext("vendor")
    auth = http_edge.BasicAuth({"till": SecretStr("s3cret"), "other": "pw2"})
    async with _guarded(ctx, auth) as client:
        async def post(header: str) -> int:
            async with client.post("/x", data=b"hi", headers={"Authorization": header}) as resp:
                return resp.status

        assert await post(_basic("till", "s3cret")) == 200
        assert await post(_basic("other", "pw2")) == 200
        assert await post(_basic("till", "pw2")) == 401  # another user's password
        assert await post(_basic("nobody", "s3cret")) == 401
        assert await post("Basic !!!") == 401
        assert await post("Bearer s3cret") == 401
    assert ctx.counts["auth_failed"] == 4


async def test_signature_is_checked_over_the_body_and_says_401_or_403() -> None:
    ctx = FakeContext("vendor")
    secret = b"key"

    def verify(request: web.Request, body: bytes) -> str:
        given = request.headers.get("X-Sig", "")
        if not given:
            return "no_signature"
        good = hmac.new(secret, body, hashlib.sha256).hexdigest()
        return "" if hmac.compare_digest(given, good) else "bad_signature"

    async with _guarded(ctx, http_edge.Signed(verify)) as client:
        async def post(body: bytes, sig: str) -> tuple[int, bytes]:
            async with client.post("/x", data=body, headers={"X-Sig": sig} if sig else {}) as resp:
                return resp.status, await resp.read()

        good = hmac.new(secret, b"hi", hashlib.sha256).hexdigest()
        assert await post(b"hi", good) == (200, b"ok:hi")
        assert await post(b"ho", good) == (403, b'{"e":"bad_signature"}')  # the body was altered
        assert await post(b"hi", "") == (401, b'{"e":"no_signature"}')


async def test_calculate_translates_gateway_errors_into_no_loyalty() -> None:
    ctx = FakeContext("vendor")
    r = Receipt(register_id="r", receipt_number="1", lines=(Line("l1", "s", "n", 100, 1000, 100),),
                occurred_at=datetime(2026, 1, 1, tzinfo=UTC), customer=CustomerId(IdKind.CARD, "1"))
    assert (await http_edge.calculate(ctx, r)) is not None  # type: ignore[arg-type]

    async def broken(receipt: Receipt) -> CalcResult:
        raise CoreUnavailable("down")

    ctx.calculate = broken  # type: ignore[method-assign]
    assert await http_edge.calculate(ctx, r) is None  # type: ignore[arg-type]

    async def invalid(receipt: Receipt) -> CalcResult:
        raise BadInput("no", "lines")

    ctx.calculate = invalid  # type: ignore[method-assign]
    with pytest.raises(BadInput):
        await http_edge.calculate(ctx, r)  # type: ignore[arg-type]
    assert ctx.counts["calc"] == 3 and ctx.counts["calc_skipped"] == 1
