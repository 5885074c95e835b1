"""gateway.limits over real sockets: the connection cap and the admission of driver requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from gateway.limits import Admission, CappedSite
from tests.drivers.compliance_harness import wait_until


@asynccontextmanager
async def serving(app: web.Application, limit: int,
                  refused: list[int]) -> AsyncIterator[tuple[str, CappedSite]]:
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = CappedSite(runner, "127.0.0.1", 0, limit=limit, on_refused=lambda: refused.append(1))
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", site
    finally:
        await runner.cleanup()


async def test_connections_past_the_cap_get_a_plain_503_and_the_count_is_released() -> None:
    gate = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", held)
    refused: list[int] = []
    async with serving(app, 2, refused) as (url, site), aiohttp.ClientSession() as session:
        async def get() -> tuple[int, str]:
            async with session.get(url) as resp:
                return resp.status, await resp.text()

        first = [asyncio.create_task(get()) for _ in range(2)]
        cap = site.cap
        assert cap is not None
        await wait_until(lambda: cap.open == 2)
        status, text = await get()  # a third connection while two are open
        assert (status, text) == (503, "too many connections: retry later\n") and refused == [1]
        gate.set()
        assert [await t for t in first] == [(200, "ok"), (200, "ok")]
        await session.close()  # the client lets its keep-alive connections go
        await wait_until(lambda: cap.open == 0)
        async with aiohttp.ClientSession() as again, again.get(url) as resp:
            assert resp.status == 200


def test_admission_counts_and_bounds() -> None:
    gate = Admission(2)
    assert gate.try_enter() and gate.try_enter() and not gate.try_enter()
    gate.leave()
    assert gate.try_enter() and gate.in_flight == 2
    with pytest.raises(ValueError):
        Admission(0)
