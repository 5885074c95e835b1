"""simulators/registers/sbis: the shop-week script's invariants and ``posgw sim sbis``'s verdict.

The verdict is checked against a stand-in gateway (an aiohttp server giving /metrics, /healthz and
/v1/queue), so the exit status is proven both ways; the real gateway run is the e2e test's.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from simulators.registers.sbis import cli
from simulators.registers.sbis.week import shop_week

PHONES = ["+79160000101", "+79160000102"]


def test_the_week_numbers_every_drive_consecutively_and_expects_each_receipt_once() -> None:
    week = shop_week(
        seed=3, registers=3, days=4, per_day=3, end_raw=2_000_000_000, phones=PHONES, returns_share=0.5
    )
    numbers: dict[str, list[int]] = {}
    receipts: dict[str, dict[str, Any]] = {}
    for step in week.steps:
        for wrapper in step.docs:
            ((kind, body),) = wrapper.items()
            numbers.setdefault(step.fn, []).append(body["fiscalDocumentNumber"])
            if kind == "receipt":
                receipts[f"sbis:{step.fn}:{body['fiscalDocumentNumber']}"] = body
    for fn, fds in numbers.items():
        assert sorted(fds) == list(range(1, len(fds) + 1)), fn
        assert fds != sorted(fds) or fn != week.registers[0][1], "the late upload is out of order"
    assert set(receipts) == {e.key for e in week.expected}
    assert len({e.key for e in week.expected}) == len(week.expected)
    for e in week.expected:
        body = receipts[e.key]
        contact = str(body.get("buyerPhoneOrAddress", ""))
        digits = "".join(ch for ch in contact if ch.isdigit())
        assert body["totalSum"] == e.total
        assert ("+7" + digits[1:] if e.phone else "") == e.phone or "@" in contact
        assert body["operationType"] == (1 if e.kind == "sale" else 2)
    assert week.refunds() and [s.kind for s in week.steps].count("replace") == 1
    assert Counter(e.phone for e in week.refunds() if e.phone)  # returns carry their customer


@asynccontextmanager
async def stand_in(committed: list[float], queue: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A gateway stand-in: the sbis committed counter grows by ``committed`` values per read."""

    async def metrics(_: web.Request) -> web.Response:
        value = committed.pop(0) if len(committed) > 1 else committed[0]
        return web.Response(text=f'posgw_driver_events_total{{driver="sbis",what="committed"}} {value}\n')

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "pending": 0})

    async def queue_rows(_: web.Request) -> web.Response:
        return web.json_response({"rejected": queue})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/queue", queue_rows)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def args(gateway: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(
        [
            "--gateway",
            gateway,
            "--port",
            "0",
            "--registers",
            "2",
            "--days",
            "2",
            "--per-day",
            "2",
            "--step-s",
            "0",
            "--timeout",
            "1",
        ]
    )


@pytest.mark.parametrize(
    ("grown", "queue", "status"),
    [
        (1000.0, [], 0),
        (1.0, [], 1),  # not every document was taken
        (1000.0, [{"key": "sbis:F:2", "kind": "sale", "reason": "UNKNOWN_CUSTOMER", "created_at": 4e9}], 1),
    ],
)
async def test_the_exit_status_says_whether_everything_was_applied(
    grown: float,
    queue: list[dict[str, Any]],
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli, "operator_queue", _no_settle)
    async with stand_in([0.0, grown], queue) as gateway:
        assert await cli._main(args(gateway)) == status
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1 - (1 if queue else 0)])
    assert report["operator_queue"] == len(queue) and report["sales"] > 0


async def _no_settle(gateway: str, *, since: float, admin_key: str = "") -> tuple[list[dict[str, Any]], str]:
    from simulators.registers.queue import operator_queue

    return await operator_queue(gateway, since=since, admin_key=admin_key, settle_s=0.0)
