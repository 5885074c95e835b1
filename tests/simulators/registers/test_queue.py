"""simulators.registers.queue: the end-of-run look at the gateway's operator queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from simulators.registers.queue import operator_queue, queue_lines

ROWS = [{"key": "old", "kind": "sale", "created_at": 10.0, "reason": "X", "last_error": "e"},
        {"key": "k1", "kind": "refund", "created_at": 100.0, "reason": "SALE_NEVER_ARRIVED",
         "last_error": "sale s1 never arrived"}]


@asynccontextmanager
async def gateway(key: str = "", *, as_list: bool = False) -> AsyncIterator[str]:
    async def queue(request: web.Request) -> web.Response:
        if key and request.headers.get("Authorization") != f"Bearer {key}":
            return web.json_response({"error": {"code": "UNAUTHORIZED"}}, status=401)
        body: Any = ROWS if as_list else {"count": len(ROWS), "rejected": ROWS}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/v1/queue", queue)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_rows_of_this_run_only() -> None:
    async with gateway() as url:
        rows, problem = await operator_queue(url, since=50.0, settle_s=0)
    assert problem == "" and [r["key"] for r in rows] == ["k1"]
    assert queue_lines(rows) == ["not applied at the core, in the gateway's operator queue: refund k1 "
                                 "SALE_NEVER_ARRIVED: sale s1 never arrived"]


async def test_the_daemons_answer_a_bare_list_of_rows_is_read() -> None:
    async with gateway(as_list=True) as url:  # gateway/server.py queue_list answers a JSON list
        rows, problem = await operator_queue(url, since=50.0, settle_s=0)
    assert problem == "" and [r["key"] for r in rows] == ["k1"]


async def test_admin_key_and_unreachable_gateway_are_named_not_raised() -> None:
    async with gateway("secret") as url:
        assert (await operator_queue(url, since=0, settle_s=0))[1].startswith("HTTP 401")
        rows, problem = await operator_queue(url, since=0, admin_key="secret", settle_s=0)
        assert problem == "" and len(rows) == 2
    rows, problem = await operator_queue("http://127.0.0.1:9", since=0, settle_s=0)
    assert rows == [] and problem.startswith("cannot read /v1/queue")
