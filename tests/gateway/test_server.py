"""gateway.server over a real socket: /healthz, /metrics, /status and the operator queue."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from drivers.evotor.driver import create
from gateway.metrics import Metrics
from gateway.outbox import Outbox, OutboxStats
from gateway.receipt import Event, EventKind
from gateway.salvage import SalvageReport
from gateway.server import MountedDriver, build_app
from tests.drivers.fake_context import FakeContext

ADMIN = "admin-secret"


class BrokenStats:
    """An outbox view whose stats say what the test wants (the real outbox for the rest)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.override: dict[str, Any] = {}
        self.fail = False

    async def stats(self) -> OutboxStats:
        if self.fail:
            raise OSError("disk I/O error")
        return dataclasses.replace(await self.outbox.stats(), **self.override)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.outbox, name)


@dataclasses.dataclass
class Env:
    base: str
    session: aiohttp.ClientSession
    outbox: Outbox
    view: BrokenStats
    metrics: Metrics

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.get(self.base + path, **kw) as resp:
            text = await resp.text()
            return resp.status, (await resp.json()) if resp.content_type == "application/json" else text

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.post(self.base + path, **kw) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    metrics = Metrics()
    outbox = await Outbox.open(tmp_path / "outbox.db", metrics=metrics)
    view = BrokenStats(outbox)
    app = build_app(outbox=view, metrics=metrics, drivers=[], core_state=lambda: "open", admin_key=ADMIN)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield Env(f"http://127.0.0.1:{runner.addresses[0][1]}", session, outbox, view, metrics)
    await runner.cleanup()
    await outbox.close()


def event(n: int) -> Event:
    return Event(EventKind.CANCEL, f"native:R1:cancel:{n}", "R1", datetime(2024, 5, 1, tzinfo=UTC),
                 sale_key=f"native:R1:doc:{n}")


async def test_healthz_ok(env: Env) -> None:
    status, body = await env.get("/healthz")
    assert status == 200
    assert body["status"] == "ok" and body["core"] == "open" and body["pending"] == 0


async def test_healthz_degraded_while_a_driver_alarm_is_raised(env: Env) -> None:
    env.metrics.alarm("sbis", "fiscal_sign:9999", "document 12 changed its fiscal sign: check SBIS", now=5.0)
    status, body = await env.get("/healthz")
    assert (status, body["status"]) == (200, "degraded")
    assert body["alarms"] == [{"driver": "sbis", "key": "fiscal_sign:9999",
                               "message": "document 12 changed its fiscal sign: check SBIS", "since": 5.0}]
    env.metrics.alarm("sbis", "fiscal_sign:9999", None)
    status, body = await env.get("/healthz")
    assert (status, body["status"]) == (200, "ok") and "alarms" not in body


@pytest.mark.parametrize(
    ("override", "problem"),
    [({"writable": False}, "outbox not writable"), ({"stuck": True}, "outbox backlog stuck")],
)
async def test_healthz_503_when_outbox_unwritable_or_stuck(
    env: Env, override: dict[str, Any], problem: str,
) -> None:
    env.view.override = override
    status, body = await env.get("/healthz")
    assert (status, body["status"]) == (503, "not_serving")
    assert body["problems"] == [problem]


async def test_healthz_503_when_outbox_unreadable_and_metrics_still_served(env: Env) -> None:
    env.view.fail = True
    status, body = await env.get("/healthz")
    assert status == 503 and body["problems"] == ["outbox unreadable"]
    assert (await env.get("/metrics"))[0] == 200


async def test_metrics_exposes_names_and_fresh_outbox_gauges(env: Env) -> None:
    await env.outbox.append(event(1))
    await env.outbox.append(event(2))
    env.metrics.outbox_depth.set(0)  # stale: the scrape must refresh it
    status, text = await env.get("/metrics")
    assert status == 200
    for name in ("posgw_outbox_pending", "posgw_outbox_oldest_pending_seconds", "posgw_calc_seconds",
                 "posgw_http_requests_total", "posgw_driver_restarts_total", "posgw_core_breaker_open",
                 "posgw_operator_queue", "posgw_delivered_total"):
        assert name in text
    assert "posgw_outbox_pending 2.0" in text


async def test_status_page(env: Env) -> None:
    env.metrics.driver_events.labels(driver="native", what="sale").inc(3)
    env.metrics.calc_answers.labels(driver="native", mode="offline").inc(2)
    await env.outbox.append(event(1))
    for path in ("/", "/status"):  # the page itself: tests/gateway/test_status_page.py
        status, page = await env.get(path)
        assert status == 200
        assert "<td>open</td>" in page  # breaker state
        assert "<th>outbox pending</th><td>1</td>" in page
        assert "<th>offline answers (last hour)</th><td>2</td>" in page


async def rejected_row(env: Env) -> int:
    await env.outbox.append(event(7))
    (row,) = await env.outbox.next_batch(10)
    await env.outbox.mark_rejected(row.id, "INSUFFICIENT_POINTS", "spent elsewhere")
    return row.id


async def test_queue_needs_admin_key(env: Env) -> None:
    row_id = await rejected_row(env)
    assert (await env.get("/v1/queue"))[0] == 401
    assert (await env.post(f"/v1/queue/{row_id}/retry"))[0] == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await env.post(f"/v1/queue/{row_id}/retry", headers=wrong))[0] == 401
    assert (await env.outbox.get(row_id)).state == "rejected"  # type: ignore[union-attr]


async def served(tmp_path: Path, admin_key: str, protect: list[str]) -> tuple[web.AppRunner, Outbox, str]:
    outbox = await Outbox.open(tmp_path / "outbox.db", metrics=Metrics())
    app = build_app(outbox=outbox, metrics=Metrics(), drivers=[], core_state=lambda: "open",
                    admin_key=admin_key, protect=protect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, outbox, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_admin_endpoints_answer_403_without_a_configured_key(tmp_path: Path) -> None:
    runner, outbox, base = await served(tmp_path, "", [])
    try:
        async with aiohttp.ClientSession() as session:
            for method, path in (("GET", "/v1/queue"), ("POST", "/v1/queue/1/retry"),
                                 ("POST", "/v1/outbox/ack-salvage")):
                async with session.request(method, base + path, headers={"Authorization": "Bearer "}) as resp:
                    assert resp.status == 403, path
                    assert "gateway.admin_api_key" in (await resp.json())["error"]["message"]
            async with session.get(base + "/metrics") as resp:
                assert resp.status == 200  # not protected unless configured
    finally:
        await runner.cleanup()
        await outbox.close()


async def test_metrics_and_status_can_require_the_admin_key(tmp_path: Path) -> None:
    import base64

    runner, outbox, base = await served(tmp_path, ADMIN, ["/metrics", "/", "/status"])
    browser = {"Authorization": "Basic " + base64.b64encode(f"shop:{ADMIN}".encode()).decode()}
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/metrics", "/", "/status"):
                async with session.get(base + path) as resp:
                    assert resp.status == 401, path
                    assert resp.headers["WWW-Authenticate"].startswith("Basic ")  # a browser prompts
                async with session.get(base + path, headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
                    assert resp.status == 200, path
                async with session.get(base + path, headers=browser) as resp:
                    assert resp.status == 200, path
            bad = {"Authorization": "Basic " + base64.b64encode(b"shop:wrong").decode()}
            async with session.get(base + "/metrics", headers=bad) as resp:
                assert resp.status == 401
            async with session.get(base + "/metrics", headers={"Authorization": "Basic !!"}) as resp:
                assert resp.status == 401
            async with session.get(base + "/healthz") as resp:
                assert resp.status == 200  # the probe stays open
    finally:
        await runner.cleanup()
        await outbox.close()


async def test_queue_list_retry_resolve(env: Env) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    row_id = await rejected_row(env)
    status, rows = await env.get("/v1/queue", headers=auth)
    assert status == 200
    assert [(r["id"], r["key"], r["reason"], r["state"]) for r in rows] == [
        (row_id, "native:R1:cancel:7", "INSUFFICIENT_POINTS", "rejected")]
    assert rows[0]["age_s"] >= 0 and rows[0]["created_at_iso"].endswith("+00:00")  # posgw queue's form
    status, body = await env.post(f"/v1/queue/{row_id}/retry", headers=auth)
    assert (status, body["state"]) == (200, "pending")
    assert (await env.post(f"/v1/queue/{row_id}/retry", headers=auth))[0] == 409  # no longer rejected
    assert (await env.post("/v1/queue/999/retry", headers=auth))[0] == 404
    (row,) = await env.outbox.next_batch(10)
    await env.outbox.mark_rejected(row.id, "INSUFFICIENT_POINTS", "again")
    status, body = await env.post(f"/v1/queue/{row_id}/resolve", headers=auth, json={})
    assert (status, body["error"]["field"]) == (400, "note")
    note = {"note": "called the shop"}
    status, body = await env.post(f"/v1/queue/{row_id}/resolve", headers=auth, json=note)
    assert (status, body["state"], body["note"]) == (200, "resolved", "called the shop")
    assert (await env.get("/v1/queue", headers=auth))[1] == []


# ------------------------------------------------------------------ a driver's edge decides its answers


async def test_a_drivers_own_limit_and_error_shape_decide_every_refusal(tmp_path: Path) -> None:
    """[drivers.evotor] max_body_bytes = 4 MiB: a 2 MiB body reaches the driver (the gateway-wide
    1 MiB does not apply); above 4 MiB, and for 404/405, the answer is Evotor's {"errors": [...]}."""
    metrics = Metrics()
    outbox = await Outbox.open(tmp_path / "outbox.db", metrics=metrics)
    driver = create({"pairing_tokens": ["tok"], "max_body_bytes": 4 << 20})
    ctx = FakeContext("evotor")
    app = build_app(outbox=outbox, metrics=metrics, drivers=[MountedDriver("evotor", driver, ctx)],
                    core_state=lambda: "closed")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/evotor"
    headers = {"X-Gateway-Token": "tok", "Content-Type": "application/json"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            async def call(method: str, path: str, body: bytes = b"") -> tuple[int, Any, str]:
                async with session.request(method, base + path, data=body, headers=headers) as resp:
                    return resp.status, await resp.json(), resp.headers.get("Allow", "")

            two_mib = b'{"pad":"' + b"x" * (2 << 20) + b'"}'
            status, body, _ = await call("POST", "/event", two_mib)
            assert status == 400 and body["errors"][0]["code"] == 2003  # read, parsed, refused by the driver
            status, body, _ = await call("POST", "/event", b"x" * ((4 << 20) + 1))
            assert status == 413 and body["errors"][0]["code"] == 2005
            status, body, allow = await call("GET", "/event")
            assert status == 405 and "errors" in body and "POST" in allow
            status, body, _ = await call("POST", "/nowhere", b"{}")
            assert status == 404 and "errors" in body
    finally:
        await runner.cleanup()
        await outbox.close()


SALVAGED = SalvageReport(source="/d/outbox.db", into="/d/outbox.db", moved_to="/d/outbox.db.corrupt-X",
                         salvaged=35, pending=35, lost=10, methods=("row by row",), at=1.0)


async def test_healthz_degraded_after_a_salvage_until_acknowledged(env: Env) -> None:
    """A salvage on record (written by the open in the file itself): 200 "degraded" with the report
    on /healthz, shown on /status and /metrics, until the operator acknowledges it over HTTP."""
    conn = sqlite3.connect(env.outbox.path, isolation_level=None)
    conn.execute("INSERT INTO salvage (at, report) VALUES (1.0, ?)", (SALVAGED.to_json(),))
    conn.close()
    status, body = await env.get("/healthz")
    assert status == 200 and body["status"] == "degraded" and body["problems"] == []
    [shown] = body["salvage"]
    assert (shown["moved_to"], shown["salvaged"], shown["lost"]) == ("/d/outbox.db.corrupt-X", 35, 10)
    assert "ack-salvage" in body["action"]
    _, page = await env.get("/status")
    assert "DEGRADED: outbox salvaged" in page and "10 lost" in page and "corrupt-X" in page
    _, text = await env.get("/metrics")
    assert "posgw_outbox_salvage_unacknowledged 1.0" in text and "posgw_outbox_salvage_lost_rows 10.0" in text
    env.view.override = {"writable": False}  # a real problem still wins: 503, and the report stays
    status, body = await env.get("/healthz")
    assert status == 503 and body["status"] == "not_serving" and body["salvage"]
    env.view.override = {}
    assert (await env.post("/v1/outbox/ack-salvage"))[0] == 401
    assert (await env.post("/v1/outbox/ack-salvage", headers={"Authorization": "Bearer nope"}))[0] == 401
    status, answer = await env.post("/v1/outbox/ack-salvage", headers={"Authorization": f"Bearer {ADMIN}"})
    assert (status, answer) == (200, {"acknowledged": 1})
    status, body = await env.get("/healthz")
    assert (status, body["status"]) == (200, "ok") and "salvage" not in body
    _, text = await env.get("/metrics")
    assert "posgw_outbox_salvage_unacknowledged 0.0" in text


async def test_an_unreadable_outbox_is_logged_once_per_change_not_per_poll(
    env: Env, caplog: pytest.LogCaptureFixture,
) -> None:
    env.view.fail = True
    with caplog.at_level(logging.ERROR, logger="posgw.server"):
        for _ in range(5):
            assert (await env.get("/healthz"))[0] == 503
        env.view.fail = False
        assert (await env.get("/healthz"))[0] == 200
    assert [r.message for r in caplog.records] == ["outbox stats failed", "outbox stats readable again"]
