"""gateway.status_page: the hour window, the kept warnings, loyalty outcomes, and the page itself
served by gateway.server on 127.0.0.1 over a real outbox."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.logs import RedactFilter
from gateway.metrics import Metrics
from gateway.outbox import Outbox, OutboxRow
from gateway.payload import event_to_json
from gateway.receipt import CustomerId, Event, EventKind, IdKind
from gateway.server import build_app
from gateway.status_page import DriverView, PageData, RecentErrors, Window, mask, outcome, render, totals
from tests.gateway.receipt_fixtures import make_receipt

ADMIN = "status-admin-key"
PHONE = "+79991234567"


def sale(number: str, *, customer: str | None = PHONE, offline: bool = False, redeem: int = 0) -> Event:
    receipt = make_receipt(receipt_number=number, redeem_points=redeem,
                           customer=CustomerId(IdKind.PHONE, customer) if customer else None)
    return Event(EventKind.SALE, receipt.sale_key(), "R1", receipt.occurred_at, receipt=receipt,
                 offline=offline)


def committed(accrue: int, redeemed: int, customer_id: str = "17") -> str:
    calc = {"customer_id": customer_id, "points_to_accrue": str(accrue), "redeemed_ordinary": str(redeemed)}
    return json.dumps({"commit": {"operation_id": "9", "calculation": calc}})


# ------------------------------------------------------------------ the hour window


def test_window_counts_growth_since_the_oldest_sample_inside_the_hour() -> None:
    w = Window(span_s=3600, every_s=60)
    assert w.since("x", 5, now=0) == 5  # no sample yet: everything since the start
    w.sample({"x": 0}, now=0)
    w.sample({"x": 10}, now=1800)
    w.sample({"x": 12}, now=3700)
    assert w.since("x", 15, now=3700) == 5  # the sample at 0 is out of the hour: from 10
    assert w.since("x", 15, now=3000) == 15  # at 3000 the sample at 0 still counts
    assert w.since("missing", 4, now=3700) == 4


def test_window_forgets_samples_older_than_the_span_but_keeps_one() -> None:
    w = Window(span_s=100, every_s=10)
    for t in range(0, 1000, 10):
        w.sample({"x": t}, now=t)
    assert len(w.taken) <= 12
    assert w.since("x", 990, now=990) == 990 - w.taken[0][1]["x"]


def test_totals_read_the_metrics() -> None:
    m = Metrics()
    m.calc_answers.labels("native", "offline").inc(3)
    m.calc_answers.labels("native", "online").inc(2)
    m.calc_seconds.labels("native", "online").observe(0.02)
    m.core_calls.labels("Calculate", "OK").inc(4)
    m.core_calls.labels("Calculate", "UNAVAILABLE").inc(1)
    m.core_calls.labels("Calculate", "BREAKER_OPEN").inc(7)  # refused locally: not a failed call
    t = totals(m)
    assert (t["offline_answers"], t["online_answers"], t["calc_count"]) == (3, 2, 1)
    assert (t["core_ok"], t["core_failed"]) == (4, 1)
    assert t["calc_sum"] == pytest.approx(0.02)


# ------------------------------------------------------------------ warnings kept per driver


def test_recent_errors_by_driver_with_fields_redacted_and_bounded() -> None:
    keeper = RecentErrors(keep=2)
    root = logging.getLogger()
    redacting = logging.StreamHandler(io.StringIO())
    redacting.addFilter(RedactFilter(["s3cret-token"]))
    root.addHandler(redacting)
    log = logging.getLogger("posgw.test-status")
    log.addHandler(keeper)
    try:
        evotor = logging.getLogger("posgw.driver.evotor")
        evotor.addHandler(keeper)
        evotor.warning("request refused", extra={"reason": "bad token s3cret-token"})
        log.error("request failed", extra={"driver": "native", "path": "/v1/native/sales"})
        log.info("not kept: below WARNING")
        for n in range(3):
            log.warning("core slow %d", n)
    finally:
        log.removeHandler(keeper)
        logging.getLogger("posgw.driver.evotor").removeHandler(keeper)
        root.removeHandler(redacting)
    [(_, level, text)] = keeper.last("evotor")
    assert level == "warning" and "request refused" in text and "s3cret" not in text and "***" in text
    [(_, level, text)] = keeper.last("native")
    assert level == "error" and "path=/v1/native/sales" in text
    assert [t for _, _, t in keeper.last("gateway")] == ["core slow 1", "core slow 2"]
    assert keeper.last("nobody") == []


# ------------------------------------------------------------------ loyalty outcome


def row(ev: Event, state: str = "delivered", result_json: str = "", **kw: Any) -> OutboxRow:
    return OutboxRow(1, ev.key, ev.register_id, 1, str(ev.kind), event_to_json(ev), state,  # type: ignore[arg-type]
                     1, 0.0, "", result_json, **kw)


def test_outcome_of_a_delivered_sale_is_the_cores_figures() -> None:
    o = outcome(row(sale("1", redeem=100), result_json=committed(accrue=12, redeemed=100)))
    assert (o.accrued, o.redeemed, o.discount, o.known, o.offline) == (12, 100, 100, True, False)
    assert o.customer == "phone …4567" and PHONE not in o.text
    assert o.text == "+12 points, 100 redeemed" and o.total == 32980


def test_outcome_of_an_unknown_customer_anonymous_pending_rejected_and_offline() -> None:
    unknown = outcome(row(sale("1"), result_json=committed(0, 0, customer_id="")))
    assert not unknown.known and unknown.text == "customer not found: no loyalty"
    anonymous = outcome(row(sale("2", customer=None), result_json=committed(0, 0, customer_id="")))
    assert anonymous.text == "no customer" and anonymous.customer == ""
    pending = outcome(row(sale("3", offline=True, redeem=50), state="pending"))
    assert (pending.redeemed, pending.offline) == (50, True)
    assert pending.text == "not delivered yet, asks to redeem 50 (answered offline)"
    refused = outcome(row(sale("4"), state="rejected", reason="UNKNOWN_CUSTOMER"))
    assert refused.text == "refused by the core: UNKNOWN_CUSTOMER" and refused.accrued == 0
    refund = Event(EventKind.REFUND, "native:R1:refund:1", "R1", sale("5").occurred_at, sale_key="k",
                   refund_full=True)
    back = outcome(row(refund, result_json=json.dumps({"refund": {"points_restored": "30"}})))
    assert back.text == "refund applied, 30 points restored" and back.total == 0
    broken = outcome(row(sale("6"), result_json="{not json"))
    assert broken.text == "not delivered yet"


def test_mask_keeps_the_last_four() -> None:
    assert (mask("+79991234567"), mask("123"), mask("")) == ("…4567", "…", "…")


# ------------------------------------------------------------------ the page over a real socket


@dataclasses.dataclass
class Env:
    base: str
    session: aiohttp.ClientSession
    outbox: Outbox
    metrics: Metrics

    async def page(self, path: str = "/") -> str:
        async with self.session.get(self.base + path) as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            return await resp.text()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    metrics = Metrics()
    outbox = await Outbox.open(tmp_path / "outbox.db", metrics=metrics)
    app = build_app(outbox=outbox, metrics=metrics, drivers=[], core_state=lambda: "closed", admin_key=ADMIN)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield Env(f"http://127.0.0.1:{runner.addresses[0][1]}", session, outbox, metrics)
    await runner.cleanup()
    await outbox.close()


def cell(page: str, key: str) -> str:
    """The text of the figure named ``key`` (a row's value cell, or a cell/element with data-k)."""
    m = re.search(rf"<tr data-k='{re.escape(key)}'><th>[^<]*</th><td>([^<]*)</td>", page) or \
        re.search(rf"data-k='{re.escape(key)}'>([^<]*)<", page)
    assert m is not None, f"no figure {key!r} on the page"
    return m.group(1)


async def test_empty_gateway_page_at_root_and_status(env: Env) -> None:
    page = await env.page("/")
    assert cell(page, "core_state") == "closed" and cell(page, "outbox_pending") == "0"
    assert cell(page, "offline_hour") == "0" and cell(page, "alarms") == "none"
    assert "empty: nothing waits for an operator" in page and "none yet" in page
    assert "<link rel='icon' href='data:,'>" in page  # no favicon request (a 404 in the browser console)
    assert (await env.page("/status")).count("<h1>posgw</h1>") == 1


async def test_page_shows_figures_receipts_queue_and_alarms_escaped(env: Env) -> None:
    env.metrics.calc_answers.labels("native", "offline").inc(2)
    env.metrics.calc_answers.labels("native", "online").inc(1)
    env.metrics.calc_seconds.labels("native", "online").observe(0.040)
    env.metrics.driver_events.labels("native", "committed").inc(3)
    env.metrics.http_requests.labels("native", "4xx").inc(1)
    env.metrics.alarm("native", "fs<1>", "<script>alert(1)</script> check the till")
    ok, offline, bad = sale("1"), sale("2", offline=True, redeem=30), sale("<b>3</b>")
    for ev in (ok, offline, bad):
        await env.outbox.append(ev)
    rows = {r.key: r for r in await env.outbox.next_batch(10)}
    await env.outbox.mark_delivered(rows[ok.key].id, committed(accrue=15, redeemed=0))
    await env.outbox.mark_rejected(rows[bad.key].id, "UNKNOWN_CUSTOMER", "no <customer> with this phone")
    logging.getLogger("posgw.driver.native").warning("request refused", extra={"reason": "<bad> json"})

    page = await env.page()
    assert cell(page, "offline_hour") == "2" and cell(page, "offline_total") == "2"
    assert cell(page, "core_latency") == "40.0 ms average over 1 answers"
    assert cell(page, "outbox_pending") == "1" and cell(page, "operator_queue") == "1"
    assert cell(page, "native.committed") == "3" and cell(page, "native.http_4xx") == "1"
    assert "request refused (reason=&lt;bad&gt; json)" in page
    assert cell(page, "queue_rows") == "1"
    assert f"data-id='{rows[bad.key].id}' data-action='retry'" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "&lt;b&gt;3&lt;/b&gt;" in page and "<b>3</b>" not in page
    assert "no &lt;customer&gt; with this phone" in page
    assert "<td>+15 points</td>" in page
    assert "not delivered yet, asks to redeem 30 (answered offline)" in page
    assert PHONE not in page and "phone …4567" in page
    assert "DEGRADED" in page  # a raised alarm


async def test_page_survives_an_unreadable_outbox(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise OSError("disk I/O error")

    monkeypatch.setattr(env.outbox, "stats", broken)
    page = await env.page()
    assert cell(page, "outbox_pending") == "unreadable" and "NOT SERVING: outbox unreadable" in page


def test_devices_show_their_alarm_or_that_they_answer() -> None:
    metrics = Metrics()
    metrics.driver_events.labels("serial", "device_frame").inc(7)
    metrics.driver_events.labels("scale", "device_absent").inc(2)
    metrics.alarm("scale", "port:/dev/ttyUSB0", "scale on /dev/ttyUSB0 cannot be opened: plug it in")
    data = PageData(stats=None, core_state="closed", metrics=metrics, window=Window(), errors=RecentErrors(),
                    drivers=[DriverView("serial", "Serial devices", "device"),
                             DriverView("scale", "Scale", "device"), DriverView("idle", "Idle", "device"),
                             DriverView("native", "Native", "push")],
                    queue=(), recent=(), started_at=0.0, admin_key_set=True, now=60.0)
    page = render(data)
    assert cell(page, "serial.device") == "present"
    assert cell(page, "scale.device") == "ALARM: scale on /dev/ttyUSB0 cannot be opened: plug it in"
    assert cell(page, "idle.device") == "no alarm, nothing read yet"
    assert "data-k='native.device'>" not in page  # a push driver has no device


async def test_a_long_operator_queue_shows_its_first_rows_and_the_count(
    env: Env, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("gateway.status_page.QUEUE_SHOWN", 2)
    for n in range(3):
        await env.outbox.append(sale(str(n), customer=None))
    for r in await env.outbox.next_batch(10):
        await env.outbox.mark_rejected(r.id, "INVALID_RECEIPT", "bad")
    page = await env.page()
    assert cell(page, "queue_rows") == "3" and page.count("data-action='retry'") == 2
    assert "and 1 more: <code>posgw queue list</code>" in page
