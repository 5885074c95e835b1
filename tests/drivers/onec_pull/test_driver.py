"""drivers.onec_pull.driver against the fake 1C publication: the exchange-plan cursor, 401 on the WSDL
(alarm, then recovery), HTML 502 and a 1C Fault retried, a slow cold start, a batch number going
backwards after an infobase restore, the soap:address never called."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.onec_pull.driver import AUTH_ALARM, OneCPullDriver, create
from drivers.onec_pull.mapping import doc_key
from gateway.poll import SKIPPED_PREFIX, PollOptions
from simulators.registers.onec_pull import FakePublication
from tests.drivers.onec_pull.receipts import PASSWORD, USER, config, receipt
from tests.drivers.outbox_context import OutboxContext, until

FAST = PollOptions(interval_s=0.02, fetch_timeout_s=10.0, backoff_initial_s=0.01, backoff_max_s=0.05)


@pytest.fixture
async def pub() -> AsyncIterator[FakePublication]:
    async with FakePublication(USER, PASSWORD).serving() as p:
        yield p


async def drain(ctx: OutboxContext, pub: FakePublication, driver: OneCPullDriver, expect: int) -> None:
    task = asyncio.create_task(driver.run(ctx))
    try:  # everything stored, and 1C told so by a later call's AckNo
        await until(
            lambda: task.done() or (len(ctx.rows()) >= expect and not pub.unread(str(max(pub.acks)))),
            timeout=20,
        )
        assert not task.done(), task
    finally:
        ctx.stopping.set()
        await task


async def test_batches_are_acknowledged_with_the_next_call_and_trouble_is_retried(
    tmp_path: Path,
    pub: FakePublication,
) -> None:
    ctx = await OutboxContext.open("onec_pull", tmp_path)
    pub.trouble = ["wsdl401", "html502", "fault"]
    pub.cold(0.3)
    docs = [receipt(i) for i in range(1, 6)]
    pub.publish(*docs, docs[1])  # the second receipt registered twice
    await drain(ctx, pub, OneCPullDriver(config(pub), options=FAST), 5)
    assert ctx.rows() == [doc_key(d["Id"]) for d in docs]
    assert ctx.counts["poll_failed"] >= 3 and ctx.counts["duplicate"] == 1
    assert [n for n, _ in pub.sent] == list(range(1, pub.last + 1))
    assert pub.acks[0] == 0 and sorted(pub.acks) == pub.acks  # each batch acked by a later call
    assert ctx.alarms == {}


async def test_a_refused_user_raises_the_alarm_until_fixed(tmp_path: Path, pub: FakePublication) -> None:
    ctx = await OutboxContext.open("onec_pull", tmp_path)
    pub.publish(receipt(1))
    driver = OneCPullDriver(config(pub, password="wrong"), options=FAST)
    task = asyncio.create_task(driver.run(ctx))
    await until(lambda: AUTH_ALARM in ctx.alarms)
    assert ctx.rows() == [] and "user" in ctx.alarms[AUTH_ALARM]
    ctx.stopping.set()
    await task
    ctx = ctx.fresh()
    await drain(ctx, pub, OneCPullDriver(config(pub), options=FAST), 1)
    assert ctx.rows() == [doc_key(receipt(1)["Id"])] and ctx.alarms == {}


async def test_a_restored_infobase_numbering_backwards_is_followed(
    tmp_path: Path, pub: FakePublication
) -> None:
    ctx = await OutboxContext.open("onec_pull", tmp_path)
    pub.publish(*(receipt(i) for i in range(1, 5)))
    await drain(ctx, pub, OneCPullDriver(config(pub), options=FAST), 4)
    pub.restore(1)  # batch 2 is "unsent" again and its number reused
    pub.publish(receipt(5))
    ctx = ctx.fresh()
    await drain(ctx, pub, OneCPullDriver(config(pub), options=FAST), 5)
    assert sorted(ctx.rows()) == sorted(doc_key(receipt(i)["Id"]) for i in range(1, 6))
    assert ctx.counts["committed"] == 1 and ctx.counts["duplicate"] >= 1


async def test_every_receipt_without_an_id_keeps_its_own_skipped_record(
    tmp_path: Path, pub: FakePublication
) -> None:
    def watch(ctx: OutboxContext) -> dict[str, str]:
        puts: dict[str, str] = {}
        ctx.state.on_put = lambda key, value: (
            puts.update({key: value}) if key.startswith(SKIPPED_PREFIX) else None)
        return puts

    ctx = await OutboxContext.open("onec_pull", tmp_path)
    skipped = watch(ctx)
    nameless = [{k: v for k, v in receipt(n).items() if k != "Id"} for n in (1, 2)]
    pub.publish(nameless[0], receipt(3), nameless[1])
    await drain(ctx, pub, OneCPullDriver(config(pub), options=FAST), 1)
    assert ctx.rows() == [doc_key(receipt(3)["Id"])] and ctx.counts["bad_input"] == 2
    assert len(skipped) == 2 and all(k.startswith(SKIPPED_PREFIX + "no-id-") for k in skipped), skipped
    assert all("Id" in json.loads(v)["error"] for v in skipped.values())
    pub.restore(0)  # the same records read again: the same two names, nothing new
    ctx = ctx.fresh()
    again = watch(ctx)
    task = asyncio.create_task(OneCPullDriver(config(pub), options=FAST).run(ctx))
    try:
        await until(lambda: task.done() or len(again) >= 2, timeout=20)
        assert not task.done(), task
    finally:
        ctx.stopping.set()
        await task
    assert set(again) == set(skipped) and ctx.rows() == [doc_key(receipt(3)["Id"])]


def test_create_reads_the_section() -> None:
    driver = create(
        {"wsdl_url": "http://127.0.0.1:1/base/ws/loyalty.1cws?wsdl", "user": "u", "password": "p"}
    )
    assert driver.name == "onec_pull" and driver.edge is None and driver.routes(None) == []  # type: ignore[arg-type]
    assert driver.options.fetch_timeout_s == 41.0
