"""gateway.offline_cache: the disk snapshot of program and balances, refreshed from a real fake
core; survives a restart with the core down, keeps the old copy when a refresh fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gateway.core_client import CoreClient
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.offline_cache import OfflineCache
from gateway.receipt import CustomerId, IdKind
from tests.gateway.calc_fakes import Failure, FakeCore
from tests.gateway.offline_fixtures import (
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
    fake.program = pb.Program(program_id="test", version="v2", config_json="{not json")
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
