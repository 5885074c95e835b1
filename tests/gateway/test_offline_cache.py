"""gateway.offline_cache: the disk snapshot of program and balances, refreshed from a real fake
core; survives a restart with the core down, keeps the old copy when a refresh fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from gateway.core_client import CoreClient
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.offline_cache import RECENT_MARGIN_S, OfflineCache
from gateway.receipt import CustomerId, IdKind
from tests.gateway.calc_fakes import Failure, FakeCore
from tests.gateway.offline_fixtures import (
    PHONE,
    PROGRAM,
    Wall,
    loaded_cache,
    serve_fake_core,
)


@pytest.fixture
async def fake_core() -> AsyncIterator[tuple[FakeCore, CoreClient]]:
    async for served in serve_fake_core():
        yield served


async def test_snapshot_survives_restart_with_core_down(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]
) -> None:
    fake, client = fake_core
    wall = Wall()
    await loaded_cache(tmp_path, client, wall)
    assert fake.count("GetBalances") == 2  # 4 customers, pages of 3
    restarted = OfflineCache(tmp_path, None, wall=wall)  # no core at all
    assert restarted.program is None
    restarted.load()
    assert restarted.program == PROGRAM and restarted.program_version == "v1"
    assert restarted.customer_count == 4
    for typed in ("8 (912) 345-67-89", "+7 912 3456789", "79123456789"):
        found = restarted.find(CustomerId(IdKind.PHONE, typed))
        assert found is not None and found.customer_id == "c1" and found.ordinary_points == 500
    assert restarted.find(CustomerId(IdKind.CARD, "1234 5678")).customer_id == "c1"  # type: ignore[union-attr]
    assert restarted.find(CustomerId(IdKind.CUSTOMER_ID, "c2")).tier == "gold"  # type: ignore[union-attr]
    assert restarted.find(CustomerId(IdKind.APP_CODE, "123456")) is None
    assert restarted.find(CustomerId(IdKind.PHONE, "not a phone")) is None
    assert restarted.find(CustomerId(IdKind.PHONE, "+79000000000")) is None
    wall.now += 42
    assert restarted.snapshot_age_s() == pytest.approx(42)


async def test_failed_refresh_keeps_old_snapshot(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]
) -> None:
    fake, client = fake_core
    cache = await loaded_cache(tmp_path, client)
    fake.balances = [pb.BalanceEntry(customer_id="new")] * 5
    fake.failures = [None, None, Failure(grpc.StatusCode.UNAVAILABLE)]  # program ok, page 1 ok, page 2 fails
    assert not await cache.refresh()
    assert cache.customer_count == 4 and cache.find(CustomerId(IdKind.CUSTOMER_ID, "c1")) is not None
    assert "GetBalances" in cache.last_error
    on_disk = json.loads((tmp_path / "balances.json").read_text())
    assert len(on_disk["customers"]) == 4
    fake.always_fail = Failure(grpc.StatusCode.UNAVAILABLE)
    assert not await cache.refresh()
    assert cache.program == PROGRAM
    fake.always_fail = None
    assert await cache.refresh() and cache.last_error == ""
    assert cache.customer_count == 1  # the five entries share one id


async def test_unparseable_program_is_not_taken(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]
) -> None:
    fake, client = fake_core
    cache = await loaded_cache(tmp_path, client)
    fake.program = pb.GetProgramResponse(program_id="test", version="v2", config_json="{not json")
    assert not await cache.refresh()
    assert cache.program == PROGRAM and cache.program_version == "v1"
    assert "unparseable" in cache.last_error


def test_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "balances.json").write_text('{"v": 1, "customers": [tru')
    cache = OfflineCache(tmp_path)
    cache.load()
    assert cache.customer_count == 0
    assert not (tmp_path / "balances.json").exists()
    assert len(list(tmp_path.glob("balances.json.corrupt-*"))) == 1


async def test_refresh_loop_keeps_each_interval_and_stops(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient],
) -> None:
    fake, client = fake_core
    cache = OfflineCache(tmp_path, client, program_every_s=0.02, balances_every_s=3600)
    stopping = asyncio.Event()
    task = asyncio.create_task(cache.refresh_loop(stopping))
    for _ in range(200):
        if fake.count("GetProgram") >= 4:
            break
        await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(task, 2.0)
    assert fake.count("GetProgram") >= 4
    assert fake.count("GetBalances") == 1  # fetched at start only: its interval is an hour
    assert cache.customer_count == 4


def _balance_requests(fake: FakeCore) -> list[pb.GetBalancesRequest]:
    return [r for name, r in fake.requests if name == "GetBalances"]


async def test_new_customers_reach_the_snapshot_between_full_refreshes(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient],
) -> None:
    """Registered after the full snapshot: merged by refresh_recent, found offline, on disk for a
    restart; the ask is for changes since the last fetch on the core's clock (minus the margin)."""
    fake, client = fake_core
    cache = await loaded_cache(tmp_path, client)
    full_at = cache.core_snapshot_at
    assert full_at is not None and not _balance_requests(fake)[0].HasField("active_since")
    newcomer = CustomerId(IdKind.PHONE, "+7 916 555-00-01")
    assert cache.find(newcomer) is None
    fake.balances = [pb.BalanceEntry(customer_id="c5", phone="+79165550001", ordinary_points=300),
                     pb.BalanceEntry(customer_id="c1", phone=PHONE, ordinary_points=450)]  # c1 spent 50
    assert await cache.refresh_recent() == 1
    asked = _balance_requests(fake)[-1]
    since = asked.active_since.ToDatetime(tzinfo=full_at.tzinfo)
    assert since == full_at - timedelta(seconds=RECENT_MARGIN_S)
    found = cache.find(newcomer)
    assert found is not None and found.customer_id == "c5" and found.ordinary_points == 300
    anna = cache.find(CustomerId(IdKind.PHONE, PHONE))
    assert cache.customer_count == 5 and anna is not None and anna.ordinary_points == 450
    restarted = OfflineCache(tmp_path, None)
    restarted.load()
    assert restarted.find(newcomer) is not None and restarted.customer_count == 5
    assert cache.core_snapshot_at is not None and cache.core_snapshot_at >= full_at
    fake.balances = []  # nobody changed: nothing rewritten, nothing lost
    assert await cache.refresh_recent() == 0 and cache.customer_count == 5


async def test_refresh_recent_needs_a_full_snapshot_and_keeps_the_copy_on_failure(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient],
) -> None:
    fake, client = fake_core
    fresh = OfflineCache(tmp_path / "fresh", client)
    assert await fresh.refresh_recent() == 0 and not _balance_requests(fake)  # no full snapshot yet: no call
    cache = await loaded_cache(tmp_path, client)
    fake.always_fail = Failure(grpc.StatusCode.UNAVAILABLE)
    assert await cache.refresh_recent() == 0
    assert cache.customer_count == 4 and cache.last_error == ""  # the full refresh reports problems


async def test_refresh_loop_polls_recent_customers_between_full_snapshots(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient],
) -> None:
    fake, client = fake_core
    cache = OfflineCache(tmp_path, client, program_every_s=3600, balances_every_s=3600, recent_every_s=0.02)
    stopping = asyncio.Event()
    task = asyncio.create_task(cache.refresh_loop(stopping))
    for _ in range(200):
        if cache.customer_count == 4:
            break
        await asyncio.sleep(0.01)
    fake.balances = [*fake.balances, pb.BalanceEntry(customer_id="c9", phone="+79165550009")]
    for _ in range(300):
        if cache.find(CustomerId(IdKind.PHONE, "+79165550009")) is not None:
            break
        await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(task, 2.0)
    assert cache.find(CustomerId(IdKind.PHONE, "+79165550009")) is not None
    full = [r for r in _balance_requests(fake) if not r.HasField("active_since")]
    assert len(full) == 1 and len(_balance_requests(fake)) >= 2  # one full snapshot, then increments


async def test_a_failed_refresh_is_tried_again_soon_not_after_the_interval(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient],
) -> None:
    """A gateway started before its core: the first refresh fails; the next comes after retry_s,
    not after the hour-long intervals."""
    fake, client = fake_core
    fake.always_fail = Failure(grpc.StatusCode.UNAVAILABLE)
    cache = OfflineCache(tmp_path, client, program_every_s=3600, balances_every_s=3600, retry_s=0.05)
    stopping = asyncio.Event()
    task = asyncio.create_task(cache.refresh_loop(stopping))
    for _ in range(200):
        if fake.count("GetProgram") >= 1:
            break
        await asyncio.sleep(0.01)
    fake.always_fail = None  # the core is up now
    for _ in range(300):
        if cache.program is not None and cache.customer_count == 4:
            break
        await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(task, 2.0)
    assert cache.program == PROGRAM and cache.customer_count == 4 and cache.last_error == ""
