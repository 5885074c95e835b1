"""Core link faults while a till sells: black-holed, slow (2-10 s), flapping, core restarted, GOAWAY.

Each scenario sells through a scripted native till before, during and after the fault, timing
every calculate at the till. PASS: every sale acknowledged, after the link heals the core holds
each exactly once, and every calculate answered within the budget plus a margin (figures:
latency percentiles, answers over budget, offline answers, drain time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from simulators.faults.catalogue import Context, Outcome, scenario
from simulators.faults.scenarios.common import ScenarioProxy, delivery, probe, scenario_stack, till
from simulators.stack import Stack

BUDGET_MS = 300
MARGIN_MS = 100
FAULT_S = 6.0

Action = Callable[[Stack], Coroutine[Any, Any, Any]]


def proxy_of(stack: Stack) -> ScenarioProxy:
    assert isinstance(stack.proxy, ScenarioProxy)
    return stack.proxy


async def link_fault(
    ctx: Context,
    start: Action,
    heal: Action,
    *,
    during: Action | None = None,
    seconds: float = FAULT_S,
    extra: Callable[[Stack], dict[str, Any]] | None = None,
) -> Outcome:
    async with scenario_stack(ctx.workdir, calc_budget_ms=BUDGET_MS) as stack, till(stack) as t:
        before = await probe(t, 1.0)
        await start(stack)
        side: asyncio.Task[Any] | None = asyncio.create_task(during(stack)) if during is not None else None
        fault = await probe(t, seconds)
        if side is not None:
            await side
        await heal(stack)
        after = await probe(t, 1.5)
        check = await delivery(stack, t.rec.acks, drain_s=90.0)
        more = extra(stack) if extra is not None else {}
    limit = BUDGET_MS + MARGIN_MS
    worst = max(before.calc_ms + fault.calc_ms + after.calc_ms, default=0.0)
    figures: dict[str, Any] = {
        "during": fault.figures(limit),
        "calc_max_all_ms": round(worst, 1),
        **{k: check[k] for k in ("acked", "lost", "doubled", "queued", "drain_s")},
    }
    unacked = before.sold + fault.sold + after.sold - before.acked - fault.acked - after.acked
    figures["unacked"] = unacked
    figures.update(more)
    problems = []
    if not check["ok"]:
        problems.append(
            f"delivery: lost {check['lost']}, doubled {check['doubled']}, pending {check['pending']}"
        )
    if unacked:
        problems.append(f"{unacked} sales not acknowledged")
    if worst > limit:
        problems.append(f"a calculate took {worst:.0f} ms > {limit} ms (budget {BUDGET_MS} + {MARGIN_MS})")
    return Outcome.judge(not problems, figures, why_not="; ".join(problems))


async def _pass(stack: Stack) -> None:
    await stack.proxy.set_mode("pass")


@scenario("core-blackholed", "core link black-holed (bytes held, nothing answered) for 6 s")
async def core_blackholed(ctx: Context) -> Outcome:
    return await link_fault(ctx, lambda s: s.proxy.set_mode("blackhole"), _pass)


@scenario("core-slow", "core link slow: every chunk held 2-10 s, for 6 s")
async def core_slow(ctx: Context) -> Outcome:
    return await link_fault(
        ctx, lambda s: s.proxy.set_mode("latency", latency_ms=2000, jitter_ms=8000), _pass
    )


@scenario("core-flapping", "core link flapping: 700 ms up, 300 ms down (connections cut), for 6 s")
async def core_flapping(ctx: Context) -> Outcome:
    return await link_fault(ctx, lambda s: s.proxy.set_mode("flap", flap_ms=700, flap_down_ms=300), _pass)


async def _restart_core(stack: Stack) -> None:
    await asyncio.sleep(1.0)
    await stack.restart_core()


@scenario("core-restarted", "core process restarted (SIGTERM, start) while the till sells")
async def core_restarted(ctx: Context) -> Outcome:
    async def nothing(stack: Stack) -> None:
        return None

    return await link_fault(ctx, nothing, nothing, during=_restart_core)


async def _goaways(stack: Stack) -> None:
    for _ in range(4):
        await asyncio.sleep(1.0)
        await proxy_of(stack).goaway(grace_s=0.3)


@scenario("core-goaway", "HTTP/2 GOAWAY from the core side every second (4 times), connections then closed")
async def core_goaway(ctx: Context) -> Outcome:
    async def nothing(stack: Stack) -> None:
        return None

    def sent(stack: Stack) -> dict[str, Any]:
        return {"goaways_sent": proxy_of(stack).goaways_sent}

    return await link_fault(ctx, nothing, nothing, during=_goaways, extra=sent)
