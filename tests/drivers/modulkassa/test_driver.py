"""Modul Kassa routes over a real socket with a fake DriverContext: auth, 4xx, dedup, ack-after-submit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.modulkassa.driver import create
from gateway.errors import CoreUnavailable
from tests.drivers.fake_context import FakeContext, calc_result, serve
from tests.drivers.modulkassa.test_wire import closed, operation

TOKEN = {"X-Gateway-Token": "mk-tok"}


@pytest.fixture
def ctx() -> FakeContext:
    return FakeContext("modulkassa")


@pytest.fixture
async def client(ctx: FakeContext) -> AsyncIterator[Any]:
    async with serve(create({"pairing_tokens": ["mk-tok"], "max_body_bytes": 8192}), ctx) as c:
        yield c


async def post(client: Any, path: str, payload: object, headers: dict[str, str] = TOKEN) -> tuple[int, Any]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    resp = await client.post(f"/v1/modulkassa{path}", data=data, headers=headers)
    return resp.status, await resp.json()


async def test_operation_answers_impacts(client: Any, ctx: FakeContext) -> None:
    ctx.calc = lambda r: calc_result(r, {"p1": 1000})
    status, body = await post(client, "/operation", operation())
    assert status == 200 and body["result"] == "succeeded"
    assert body["data"]["impacts"] == ["i1", "i2", "i3"] and not ctx.submits


async def test_core_trouble_gives_identity_impacts_never_failed(client: Any, ctx: FakeContext) -> None:
    ctx.calc_error = CoreUnavailable("down")
    status, body = await post(client, "/operation", operation())
    assert status == 200 and body["result"] == "succeeded"
    assert [body["data"][f"impact/{i}/price"] for i in body["data"]["impacts"]] == ["150.00", "640.00"]


@pytest.mark.parametrize("headers", [{}, {"X-Gateway-Token": "nope"}, {"Authorization": "Bearer mk-tok"}])
async def test_auth_failures(client: Any, ctx: FakeContext, headers: dict[str, str]) -> None:
    status, body = await post(client, "/event", closed(), headers)
    assert status == 401 and body["result"] == "failed" and ctx.submits == []


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"action":"x","extras":{}}', b'{"operation":"pay"}'])
async def test_bad_input_is_400_failed_with_nothing_stored(
    client: Any, ctx: FakeContext, data: bytes
) -> None:
    for path in ("/event", "/operation"):
        status, body = await post(client, path, data)
        assert status == 400 and body["result"] == "failed" and body["message"].startswith("invalid request")
    assert ctx.submits == []


async def test_duplicate_close_applied_once(client: Any, ctx: FakeContext) -> None:
    assert await post(client, "/event", closed()) == (200, {"accepted": True, "duplicate": False})
    assert await post(client, "/event", closed()) == (200, {"accepted": True, "duplicate": True})
    assert [e.key for e in ctx.submits] == ["modulkassa:check:chk-1"] * 2 and len(ctx.stored) == 1


async def test_storage_failure_is_503(client: Any, ctx: FakeContext) -> None:
    ctx.storage_fails = True
    status, body = await post(client, "/event", closed())
    assert status == 503 and body["result"] == "failed" and ctx.stored == {}


async def test_ack_only_after_submit_returned(client: Any, ctx: FakeContext) -> None:
    ctx.gate = asyncio.Event()
    request = asyncio.create_task(post(client, "/event", closed()), name="close")
    await asyncio.wait_for(ctx.submit_entered.wait(), 5)
    done, _ = await asyncio.wait({request}, timeout=0.2)
    assert not done
    ctx.gate.set()
    assert (await request)[0] == 200


async def test_oversized_body_is_413(client: Any, ctx: FakeContext) -> None:
    status, body = await post(client, "/operation", b" " * 9000)
    assert status == 413 and body["result"] == "failed"


def test_sample_toml_matches_the_config_model() -> None:
    import tomllib
    from pathlib import Path

    from drivers.modulkassa.config import Config

    path = Path(create.__code__.co_filename).parent / "sample.toml"
    section = tomllib.loads(path.read_text())["drivers"]["modulkassa"]
    section.pop("enabled")
    assert set(section) == set(Config.model_fields)
    Config.model_validate(section)
