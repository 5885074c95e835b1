"""Core outages through the fault proxy, with the gateway and the core as real processes.

One stack for the module (core → fault proxy → gateway); each test breaks the link in one
way while background tills sell, probes calculate latency at the till, restores the link and
checks that every document acknowledged so far is at the core exactly once.

Latency: every calculate answer, in every test, must reach the till within the budget plus
SLACK_MS (60 ms), and the gateway's own histogram (``posgw_calc_seconds``, which the gateway
observes when the answer leaves the pipeline) must count no answer above the budget's bucket.

Why 60 ms at the till: the gateway itself answers by the budget's end (its guard gives up on the
core 40 ms before it, the calc memory write is waited for until 10 ms before it); what the till
adds is the HTTP round trip through this test process, which also runs the fault proxy and two
background tills, on a 2-core machine shared with other test runs, where either process can be
descheduled for some tens of ms. Before the fix (issue 11, item 5) answers came at 350-650 ms
during core restarts on such a machine: the offline answer's calc memory write (a group commit
with fsync) ran after the budget, unbounded. The histogram check has no slack: a late answer
there is the gateway's own. ``test_core_restarted_while_a_till_asks`` (the one that flaked under
load) asserts the gateway's measure and what the till got, not the till's wall clock.
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
from simulators.registers.native.report import Ack, Recorder
from simulators.stack import Stack, StackOptions
from tests.e2e.tools import PHONES, assert_exactly_once, figures, probe, probe_for, register_all

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

BUDGET_MS = 300
SLACK_MS = 60  # the till's side of a loaded 2-core machine: see the module docstring


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
    """Every till-side answer within the budget + SLACK_MS (no outliers allowed)."""
    print(f"{what}: {figures(samples)}")
    late = [round(m, 1) for m, _ in samples if m > BUDGET_MS + SLACK_MS]
    assert not late, f"{what}: answers later than {BUDGET_MS} + {SLACK_MS} ms: {late}; {figures(samples)}"


async def calc_over_budget(stack: Stack) -> float:
    """Answers the gateway's own histogram counts above the budget (all drivers and modes)."""
    metrics = await stack.metrics()
    over = 0.0
    for name, value in metrics.items():
        if name.startswith("posgw_calc_seconds_bucket{"):
            if "le=+Inf" in name:
                over += value
            elif f"le={BUDGET_MS / 1000}," in name + ",":
                over -= value
    return over


async def calc_answers(stack: Stack) -> float:
    """Calculate answers the gateway's histogram measured (all drivers and modes)."""
    metrics = await stack.metrics()
    return sum(v for name, v in metrics.items() if name.startswith("posgw_calc_seconds_count"))


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def gateway_kept_its_budget(world: World) -> AsyncIterator[None]:
    """After every test: no answer the gateway measured (the tills' too) was above the budget."""
    yield
    over = await calc_over_budget(world.stack)
    assert over == 0, f"posgw_calc_seconds counts {over:g} answers above {BUDGET_MS} ms"


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


async def test_core_restarted_while_a_till_asks(world: World) -> None:
    """Issue 11 item 5: the core restarted (SIGTERM, graceful stop, a new process) twice while a till
    asks continuously. What the till gets: an answer to every calculate (200, online or offline:
    the restarts show as offline answers), each within its budget as the gateway measures it
    (``posgw_calc_seconds`` counts every one of them and none above the budget's bucket), and
    every sale acknowledged and applied at the core exactly once. Before the fix the offline
    answer's calc memory write ran after the budget, unbounded (the gateway answered at 350-650
    ms with a 300 ms budget). No wall-clock figure at the till is asserted: the machine is shared."""
    rec = world.till.rec
    asked, answered, errors = rec.receipts, len(rec.calc_ms), rec.errors
    measured, over = await calc_answers(world.stack), await calc_over_budget(world.stack)
    stop = asyncio.Event()
    samples: list[tuple[float, bool]] = []

    async def ask() -> None:  # whole sales only: a cancelled sale would leave an unknown ack
        while not stop.is_set():
            samples.extend(await probe(world.till, 1, PHONES[0]))  # asserts each sale acknowledged
            await asyncio.sleep(0.01)

    async with world.traffic():
        asker = asyncio.create_task(ask())
        try:
            for _ in range(2):
                await world.stack.restart_core()
                await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asker
    print(f"core restarted twice: {figures(samples)}")
    asked = rec.receipts - asked
    assert asked == len(samples) > 0 and rec.errors == errors, rec.error_messages[-5:]
    assert len(rec.calc_ms) - answered == asked, "a calculate was not answered 200"
    assert sum(off for _, off in samples) > 0, "the restarts were not seen by the till"
    assert await calc_answers(world.stack) - measured >= asked  # the gateway measured each answer
    late = await calc_over_budget(world.stack) - over
    assert late == 0, f"posgw_calc_seconds counts {late:g} answers above the {BUDGET_MS} ms budget"
    await wait_online(world)
    await world.settle()  # nothing lost: every acknowledged sale at the core exactly once


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
