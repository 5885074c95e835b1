"""simulators.registers.queue: the end-of-run check: wait until the gateway holds nothing pending or
waiting (bounded), then read what of this run went to the operator queue."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from simulators.registers.queue import add_queue_arguments, check, operator_queue, queue_lines

ROWS = [{"key": "old", "kind": "sale", "created_at": 10.0, "reason": "X", "last_error": "e"},
        {"key": "k1", "kind": "refund", "created_at": 100.0, "reason": "SALE_NEVER_ARRIVED",
         "last_error": "sale s1 never arrived"}]


@dataclass
class FakeGateway:
    """A gateway stand-in: ``/healthz`` answers the next of ``held`` ((pending, waiting) per read,
    the last one repeated); ``/v1/queue`` answers ``rows``, plus ``late`` once ``/healthz`` said
    nothing is held (a row the core refused while the run's end was checked)."""

    url: str = ""
    held: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])
    rows: list[dict[str, Any]] = field(default_factory=lambda: list(ROWS))
    late: list[dict[str, Any]] = field(default_factory=list)
    healthz_reads: int = 0
    drained: bool = False


@asynccontextmanager
async def gateway(key: str = "", *, as_list: bool = False, held: Sequence[tuple[int, int]] = ((0, 0),),
                  late: Sequence[dict[str, Any]] = (),
                  rows: Sequence[dict[str, Any]] = tuple(ROWS)) -> AsyncIterator[FakeGateway]:
    fake = FakeGateway(held=list(held), rows=list(rows), late=list(late))

    async def healthz(_: web.Request) -> web.Response:
        fake.healthz_reads += 1
        pending, waiting = fake.held.pop(0) if len(fake.held) > 1 else fake.held[0]
        fake.drained = fake.drained or (pending, waiting) == (0, 0)
        return web.json_response({"status": "ok", "pending": pending, "waiting_for_sale": waiting})

    async def queue(request: web.Request) -> web.Response:
        if key and request.headers.get("Authorization") != f"Bearer {key}":
            return web.json_response({"error": {"code": "UNAUTHORIZED"}}, status=401)
        rows = fake.rows + (fake.late if fake.drained else [])
        body: Any = rows if as_list else {"count": len(rows), "rejected": rows}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/queue", queue)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()


LATE = {"key": "k2", "kind": "sale", "created_at": 200.0, "reason": "UNKNOWN_CUSTOMER", "last_error": "?"}


async def test_rows_of_this_run_only() -> None:
    async with gateway() as gw:
        rows, problem = await operator_queue(gw.url, since=50.0, settle_s=0)
    assert problem == "" and [r["key"] for r in rows] == ["k1"]
    assert queue_lines(rows) == ["not applied at the core, in the gateway's operator queue: refund k1 "
                                 "SALE_NEVER_ARRIVED: sale s1 never arrived"]


async def test_the_check_waits_until_nothing_is_pending_or_waiting_then_reads_the_queue() -> None:
    held = [(3, 1), (1, 1), (0, 1), (0, 0)]  # a refund waits for its sale after the sales went out
    async with gateway(held=held, late=[LATE]) as gw:
        rows, problem = await operator_queue(gw.url, since=50.0, settle_s=60)
    assert problem == "" and [r["key"] for r in rows] == ["k1", "k2"]  # the late refusal is counted
    assert gw.healthz_reads == 4  # asked until drained, not longer


async def test_documents_still_held_at_the_bound_are_a_problem_and_the_rows_are_still_read() -> None:
    async with gateway(held=[(2, 0)]) as gw:
        rows, problem = await operator_queue(gw.url, since=50.0, settle_s=0.3)
    assert [r["key"] for r in rows] == ["k1"]
    assert "still holds 2 pending and 0 waiting" in problem and gw.healthz_reads >= 2
    async with gateway(held=[(0, 1)]) as gw:  # waiting for its sale is not applied either
        assert "0 pending and 1 waiting" in (await operator_queue(gw.url, since=50.0, settle_s=0))[1]


async def test_the_daemons_answer_a_bare_list_of_rows_is_read() -> None:
    async with gateway(as_list=True) as gw:  # gateway/server.py queue_list answers a JSON list
        rows, problem = await operator_queue(gw.url, since=50.0, settle_s=0)
    assert problem == "" and [r["key"] for r in rows] == ["k1"]


async def test_admin_key_and_unreachable_gateway_are_named_not_raised() -> None:
    async with gateway("secret") as gw:
        assert (await operator_queue(gw.url, since=0, settle_s=0))[1].startswith("HTTP 401")
        rows, problem = await operator_queue(gw.url, since=0, admin_key="secret", settle_s=0)
        assert problem == "" and len(rows) == 2
    rows, problem = await operator_queue("http://127.0.0.1:9", since=0, settle_s=0)
    assert rows == [] and "cannot read the gateway's pending documents" in problem
    assert "cannot read /v1/queue" in problem


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", default="")
    add_queue_arguments(parser)
    return parser.parse_args(list(argv))


async def test_check_counts_the_rows_and_fails_on_anything_not_known_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POSGW_ADMIN_KEY", raising=False)
    assert parse().settle_s > 0 and parse("--settle-s", "5").settle_s == 5.0
    async with gateway(held=[(1, 0), (0, 0)], late=[LATE]) as gw:
        queued, lines = await check(parse("--gateway", gw.url), since=150.0)
        assert queued == 1 and lines == queue_lines([LATE])
    async with gateway(held=[(1, 0)], rows=[]) as gw:
        queued, lines = await check(parse("--gateway", gw.url, "--settle-s", "0"), since=0)
        assert queued == 0 and len(lines) == 1 and "still holds 1 pending" in lines[0]
    assert (await check(parse("--no-queue-check"), since=0)) == (0, [])
    queued, lines = await check(parse(), since=0)
    assert queued == 0 and "no --gateway" in lines[0]
