"""Customer bindings: durable, by the receipt's close time, consumed once; and through the real
Pipeline (a gRPC fake core on 127.0.0.1, the real SQLite outbox): a bound customer's calculate
and sale, an after-the-fact sale, the till's own customer winning, the register's news."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.bindings import BIND_STATE, Bindings, Watchers, fill
from gateway.breaker import CircuitBreaker
from gateway.core_client import CoreClient, CoreTarget
from gateway.driver import RegisterNews
from gateway.errors import StorageError
from gateway.metrics import Metrics
from gateway.offline import OfflineCache, OfflinePolicy
from gateway.pipeline import Pipeline
from gateway.receipt import CustomerId, Event, EventKind, IdKind, Line, Receipt, sale_event
from tests.gateway.calc_fakes import FakeCore, start_core

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
ANNA = CustomerId(IdKind.APP_CODE, "K7M2P9XQ4T")
BORIS = CustomerId(IdKind.CARD, "2770012345601")
OWN = CustomerId(IdKind.PHONE, "+79035550142")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


class DictStore:
    """The outbox's driver state and append in memory (the file itself is tested in test_outbox)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.rows: dict[tuple[str, str], str] = {}
        self.keeps: dict[tuple[str, str], float | None] = {}
        self.fail = False
        self.reads = 0

    async def put_state(self, driver: str, key: str, value: str, *, keep_s: float | None = None) -> None:
        if self.fail:
            raise StorageError("disk full (test)")
        self.rows[(driver, key)] = value
        self.keeps[(driver, key)] = keep_s

    async def get_state(self, driver: str, key: str) -> str | None:
        self.reads += 1
        return self.rows.get((driver, key))

    async def state_keys(self, driver: str, limit: int) -> list[tuple[str, float | None]]:
        return [(k, None) for (d, k), v in self.rows.items() if d == driver and v][: limit + 1]

    async def append(self, event: Event) -> bool:
        if self.fail:
            raise StorageError("disk full (test)")
        if any(e.key == event.key for e in self.events):
            return False
        self.events.append(event)
        return True


def receipt(at: datetime, customer: CustomerId | None = None, *, number: str = "1",
            register: str = "r1") -> Receipt:
    return Receipt(register, number, (Line("1", "sku", "Кофе", 20_000, 1000, 20_000),), at, customer=customer)


def sale(at: datetime, customer: CustomerId | None = None, *, number: str = "1",
         register: str = "r1") -> Event:
    r = receipt(at, customer, number=number, register=register)
    return sale_event(r, key=f"t:{register}:{number}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> DictStore:
    return DictStore()


@pytest.fixture
def bindings(store: DictStore, clock: Clock) -> Bindings:
    return Bindings(store, clock=clock, clock_skew_s=5)


async def test_a_binding_is_durable_and_live_until_it_expires(bindings: Bindings, store: DictStore,
                                                               clock: Clock) -> None:
    bound = await bindings.bind("r1", ANNA, keep_s=180, source="serial")
    row = json.loads(store.rows[(BIND_STATE, "r1")])
    assert [(r["kind"], r["value"], r["source"]) for r in row] == [("app_code", "K7M2P9XQ4T", "serial")]
    assert store.keeps[(BIND_STATE, "r1")] == pytest.approx(180 + bindings.late_s)
    clock.at(179)
    assert await bindings.live("r1") == bound
    assert await bindings.live("r2") is None
    clock.at(181)
    assert await bindings.live("r1") is None


async def test_calculate_gets_it_only_without_a_customer(bindings: Bindings, clock: Clock) -> None:
    await bindings.bind("r1", ANNA, keep_s=180)
    clock.at(30)
    assert (await bindings.for_calc(receipt(clock.now))).customer == ANNA
    assert (await bindings.for_calc(receipt(clock.now, OWN))).customer == OWN
    assert (await bindings.for_calc(receipt(clock.now, register="r2"))).customer is None


async def test_a_sale_is_matched_by_its_close_time_not_the_wall_clock(bindings: Bindings,
                                                                      clock: Clock) -> None:
    clock.at(100)
    bound = await bindings.bind("r1", ANNA, keep_s=180)
    clock.at(3600)  # the sales arrive an hour later (a till that sends closed receipts only)
    assert await bindings.for_sale(sale(T0 + timedelta(seconds=80))) is None  # closed before the scan
    assert await bindings.for_sale(sale(T0 + timedelta(seconds=96))) == bound  # within the clock skew
    assert await bindings.for_sale(sale(T0 + timedelta(seconds=250))) == bound
    assert await bindings.for_sale(sale(T0 + timedelta(seconds=281))) is None  # closed after it expired


async def test_a_binding_is_consumed_once_and_a_resend_gets_it_again(bindings: Bindings,
                                                                     clock: Clock) -> None:
    bound = await bindings.bind("r1", ANNA, keep_s=180)
    first = sale(clock.at(20), number="1")
    assert await bindings.for_sale(first) == bound
    await bindings.consume(bound, first.key)
    assert await bindings.for_sale(sale(clock.at(30), number="2")) is None
    again = await bindings.for_sale(first)
    assert again is not None and again.customer == ANNA and again.consumed_by == first.key
    assert await bindings.live("r1") is None
    assert await bindings.for_sale(replace(sale(clock.now, number="3"), kind=EventKind.REFUND)) is None


async def test_a_newer_scan_wins_after_it_and_the_older_stays_for_earlier_sales(
        bindings: Bindings, clock: Clock) -> None:
    clock.at(0)
    anna = await bindings.bind("r1", ANNA, keep_s=180)
    clock.at(60)
    boris = await bindings.bind("r1", BORIS, keep_s=180)
    clock.at(120)
    assert await bindings.live("r1") == boris
    assert await bindings.for_sale(sale(T0 + timedelta(seconds=70), number="2")) == boris
    assert await bindings.for_sale(sale(T0 + timedelta(seconds=30), number="1")) == anna  # out of order


async def test_a_rescan_of_the_same_customer_renews_it(bindings: Bindings, clock: Clock) -> None:
    await bindings.bind("r1", ANNA, keep_s=180)
    clock.at(150)
    await bindings.bind("r1", ANNA, keep_s=180)
    clock.at(300)
    live = await bindings.live("r1")
    assert live is not None and live.customer == ANNA
    assert len(bindings._cache["r1"]) == 1


async def test_bindings_survive_a_restart(store: DictStore, clock: Clock, bindings: Bindings) -> None:
    bound = await bindings.bind("r1", ANNA, keep_s=180)
    await bindings.consume(bound, "t:r1:1")
    fresh = await Bindings(store, clock=clock).bind("r1", BORIS, keep_s=180)
    restarted = Bindings(store, clock=clock)
    assert await restarted.live("r1") == fresh
    resend = await restarted.for_sale(sale(clock.at(1), number="1"))
    assert resend is not None and resend.customer == ANNA


async def test_a_failed_write_binds_nothing(bindings: Bindings, store: DictStore) -> None:
    store.fail = True
    with pytest.raises(StorageError):
        await bindings.bind("r1", ANNA, keep_s=180)
    assert await bindings.live("r1") is None


async def test_unreadable_stored_bindings_are_ignored(store: DictStore, clock: Clock) -> None:
    store.rows[(BIND_STATE, "r1")] = '[{"kind": "nonsense"}]'
    assert await Bindings(store, clock=clock).live("r1") is None


async def test_bindings_are_read_once_per_register(bindings: Bindings, store: DictStore) -> None:
    for _ in range(3):
        await bindings.live("r1")
    assert store.reads == 1


def test_fill_keeps_the_receipts_own_customer() -> None:
    assert fill(receipt(T0, OWN), None).customer == OWN
    assert fill(receipt(T0), None).customer is None


def test_watchers_tell_their_register_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    watchers, got = Watchers(), []
    stop = watchers.watch("r1", got.append)

    def broken(news: RegisterNews) -> None:
        raise RuntimeError("display unplugged")

    watchers.watch("r1", broken)
    watchers.tell(RegisterNews("closed", "r1"))
    watchers.tell(RegisterNews("closed", "r2"))
    stop()
    watchers.tell(RegisterNews("closed", "r1"))
    assert got == [RegisterNews("closed", "r1")]
    assert "register listener failed" in caplog.text


# ------------------------------------------------------------------ through the pipeline


@pytest.fixture
async def pipeline(tmp_path: Path, store: DictStore) -> AsyncIterator[Pipeline]:
    fake = FakeCore()
    server, port = await start_core(fake)
    metrics = Metrics()
    client = CoreClient(CoreTarget(f"127.0.0.1:{port}"), metrics=metrics, breaker=CircuitBreaker(3, 60.0))
    await client.start()
    pipe = Pipeline(client, OfflinePolicy(OfflineCache(tmp_path / "offline", client)), store,
                    metrics=metrics, calc_budget_s=1.0)
    pipe.fake = fake  # type: ignore[attr-defined]
    try:
        yield pipe
    finally:
        await client.close()
        await server.stop(None)


async def test_pipeline_calculates_and_commits_for_the_bound_customer(
        pipeline: Pipeline, store: DictStore) -> None:
    news: list[RegisterNews] = []
    ctx = pipeline.context("serial", None, asyncio.Event())  # type: ignore[arg-type]
    stop = ctx.watch_register("r1", news.append)
    await ctx.bind_customer("r1", ANNA, keep_s=180)
    now = datetime.now(UTC)
    result = await pipeline.calculate(receipt(now, number="1"), driver="evotor")
    assert result.customer_found and result.customer_id == "c1" and not result.offline
    (_, request), = [r for r in pipeline.fake.requests if r[0] == "Calculate"]  # type: ignore[attr-defined]
    assert request.draft.customer.app_code == "K7M2P9XQ4T"
    event = sale(now, number="1")  # the till's sale names no customer and carries no token
    appended = store.events
    assert await pipeline.submit(event)
    assert appended[0].receipt is not None and appended[0].receipt.customer == ANNA
    assert [(n.kind, n.customer) for n in news] == [("calc", ANNA), ("closed", ANNA)]
    assert news[0].result is result
    # consumed: the next receipt of r1 is nobody's
    assert (await pipeline.calculate(receipt(now, number="2"), driver="evotor")).customer_found is False
    stop()


async def test_pipeline_after_the_fact_sale_uses_its_close_time(
        pipeline: Pipeline, store: DictStore) -> None:
    clock = Clock()
    pipeline.bindings.clock = clock
    clock.at(0)
    await pipeline.bindings.bind("r9", BORIS, keep_s=180)
    clock.at(1800)  # the polled sale arrives half an hour later; it closed 60 s after the scan
    appended = store.events
    assert await pipeline.submit(sale(T0 + timedelta(seconds=60), number="5", register="r9"))
    assert await pipeline.submit(sale(T0 + timedelta(seconds=90), number="6", register="r9"))
    customers = [e.receipt.customer for e in appended if e.receipt is not None]
    assert customers == [BORIS, None]  # the first receipt after the scan, once


async def test_pipeline_the_tills_own_customer_wins_and_consumes(
        pipeline: Pipeline, store: DictStore) -> None:
    await pipeline.bindings.bind("r1", ANNA, keep_s=180)
    now = datetime.now(UTC)
    appended = store.events
    assert await pipeline.submit(sale(now, OWN, number="1"))
    assert appended[0].receipt is not None and appended[0].receipt.customer == OWN
    assert await pipeline.bindings.live("r1") is None


async def test_pipeline_a_sale_not_stored_keeps_the_binding(
        pipeline: Pipeline, store: DictStore) -> None:
    await pipeline.bindings.bind("r1", ANNA, keep_s=180)

    store.fail = True
    with pytest.raises(StorageError):
        await pipeline.submit(sale(datetime.now(UTC), number="1"))
    assert await pipeline.bindings.live("r1") is not None


async def test_pipeline_a_stalled_binding_read_does_not_hold_the_calc(
        pipeline: Pipeline, store: DictStore) -> None:
    release = asyncio.Event()

    async def stalled(driver: str, key: str) -> str | None:
        await release.wait()
        return None

    pipeline.bindings.store = replace_store(pipeline.bindings.store, stalled)
    # without the guard this would wait for ever; the hang guard below is not a timing assertion
    result = await asyncio.wait_for(
        pipeline.calculate(receipt(datetime.now(UTC), number="1"), driver="evotor"), 10)
    assert not result.customer_found
    release.set()


def replace_store(store: object, get_state: object) -> object:
    class Stalled:
        async def put_state(self, driver: str, key: str, value: str, *, keep_s: float | None = None) -> None:
            await store.put_state(driver, key, value, keep_s=keep_s)  # type: ignore[attr-defined]

    stalled = Stalled()
    stalled.get_state = get_state  # type: ignore[attr-defined]
    return stalled



async def test_pipeline_a_calc_for_a_bound_customer_is_remembered_past_the_binding(
        pipeline: Pipeline, store: DictStore) -> None:
    clock = Clock()
    pipeline.bindings.clock = clock
    clock.at(0)
    await pipeline.bindings.bind("r1", ANNA, keep_s=180)
    clock.at(170)  # calculated just before the binding ends ...
    answer = await pipeline.calculate(receipt(clock.now, number="7"), driver="native")
    assert answer.customer_found
    assert any(driver == "_calc" and value for (driver, _), value in store.rows.items())
    clock.at(400)  # ... the till carries no token and closes after it ended
    assert await pipeline.submit(sale(T0 + timedelta(seconds=185), number="7"))
    assert store.events[-1].receipt is not None and store.events[-1].receipt.customer == ANNA


async def test_pipeline_a_calc_without_a_binding_remembers_nothing(
        pipeline: Pipeline, store: DictStore) -> None:
    await pipeline.calculate(receipt(datetime.now(UTC), number="8"), driver="native")
    assert not any(driver == "_calc" for driver, _ in store.rows)
