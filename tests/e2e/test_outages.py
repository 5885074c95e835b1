"""Core outages through the fault proxy, with the gateway and the core as real processes.

One stack for the module (core → fault proxy → gateway); each test breaks the link in one
way while background tills sell, probes calculate latency at the till, restores the link and
checks that every document acknowledged so far is at the core exactly once.

Latency assertions allow for a shared 2-core machine: the 95th percentile must be within
budget + 50 ms and at most a small count of answers may exceed it; the figures are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from simulators.fleet import Fleet, ScriptedTill, native_client
from simulators.registers.native import TillConfig
from simulators.registers.native.report import Ack, Recorder, percentile
from simulators.stack import Stack, StackOptions
from tests.e2e.tools import PHONES, assert_exactly_once, figures, probe, probe_for, register_all

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

BUDGET_MS = 300
SLACK_MS = 50
MAX_OUTLIERS = 2


class World:
    def __init__(self, stack: Stack, till: ScriptedTill) -> None:
        self.stack, self.till = stack, till
        self.acks: list[Ack] = []
        self.runs = 0

    @contextlib.asynccontextmanager
    async def traffic(self) -> AsyncIterator[Fleet]:
        """Background tills selling for the duration of the block; their acks are kept."""
        self.runs += 1
        fleet = Fleet(self.stack.gateway_url, self.stack.options.api_key, tills=2, rate=15.0, seed=self.runs,
                      customers=PHONES, prefix=f"bg{self.runs}",
                      config=TillConfig(retry_for_s=60.0, redeem_share=0.0, calc_timeout_s=2.0))
        await fleet.start()
        try:
            yield fleet
        finally:
            report = await fleet.stop()
            self.acks += report.acks
            assert report.unacknowledged == 0, report.error_messages[:5]

    async def settle(self) -> None:
        await assert_exactly_once(self.stack, [*self.acks, *self.till.rec.acks])


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir: Path = tmp_path_factory.mktemp("outages")
    async with Stack(workdir, StackOptions(calc_budget_ms=BUDGET_MS)) as stack:
        await register_all(stack)
        async with native_client(stack.gateway_url, stack.options.api_key) as client:
            till = ScriptedTill(client, Recorder(), "probe-01", shift="outages")
            # The first answers may come offline while the gateway's channel connects on a busy
            # machine: sell until one is online (bounded), then the faults begin.
            online: list[tuple[float, bool]] = []
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline and not any(not off for _, off in online):
                online += await probe(till, 1, PHONES[0])
            assert any(not off for _, off in online), f"the gateway never answered online: {figures(online)}"
            yield World(stack, till)


def assert_within_budget(samples: list[tuple[float, bool]], what: str) -> None:
    print(f"{what}: {figures(samples)}")
    ms = [m for m, _ in samples]
    late = [m for m in ms if m > BUDGET_MS + SLACK_MS]
    assert percentile(ms, 95) <= BUDGET_MS + SLACK_MS, f"{what}: {figures(samples)}"
    assert len(late) <= MAX_OUTLIERS, f"{what}: late answers {late}"


async def wait_online(world: World, timeout_s: float = 15.0) -> None:
    """Until the gateway answers online again (breaker closed, channel reconnected)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        (_, offline), = await probe(world.till, 1, PHONES[1])
        if not offline:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the gateway did not answer online again")


async def test_core_refused(world: World) -> None:
    async with world.traffic():
        await world.stack.core_outage()  # listener closed: ECONNREFUSED; live connections cut
        try:
            samples = await probe(world.till, 20, PHONES[2])
        finally:
            await world.stack.core_back()
    assert all(off for _, off in samples)
    assert_within_budget(samples, "core refused")
    await wait_online(world)
    await world.settle()


async def test_core_blackholed(world: World) -> None:
    async with world.traffic():
        await world.stack.proxy.set_mode("blackhole")
        try:
            samples = await probe(world.till, 25, PHONES[3])
        finally:
            await world.stack.core_back()
    assert all(off for _, off in samples), "a black-holed core cannot have answered"
    assert_within_budget(samples, "core black-holed")
    await wait_online(world)
    await world.settle()


async def test_slow_core(world: World) -> None:
    async with world.traffic():
        await world.stack.proxy.set_mode("latency", latency_ms=BUDGET_MS + 100, jitter_ms=0)
        try:
            slow = await probe(world.till, 10, PHONES[4])
        finally:
            await world.stack.proxy.set_mode("latency", latency_ms=15, jitter_ms=5)
        assert all(off for _, off in slow), "answers slower than the budget must come from the offline policy"
        assert_within_budget(slow, f"core {BUDGET_MS + 100} ms away")
        await wait_online(world)
        fast = await probe(world.till, 10, PHONES[5])
        print(f"core 15-20 ms away: {figures(fast)}")
        assert sum(not off for _, off in fast) >= 8, "a core within the budget must answer online"
        await world.stack.core_back()
    await world.settle()


async def test_flapping_link(world: World) -> None:
    async with world.traffic():
        await world.stack.proxy.set_mode("flap", flap_ms=300, flap_down_ms=300)
        try:
            samples = await probe_for(world.till, 4.0, PHONES[6])
        finally:
            await world.stack.core_back()
    assert_within_budget(samples, "flapping link")
    assert len(samples) > 20
    await wait_online(world)
    await world.settle()


async def test_core_restarted_as_new_process(world: World) -> None:
    async with world.traffic():
        old = world.stack.core.pid
        await world.stack.core.kill()
        samples = await probe(world.till, 5, PHONES[7])
        await world.stack.core.start(timeout_s=60)
        assert world.stack.core.pid != old
        samples += await probe(world.till, 5, PHONES[7])
        await asyncio.sleep(1.0)
    assert_within_budget(samples, "core killed and restarted")
    await wait_online(world)
    await world.settle()
