"""The load generator: N tills selling concurrently against one gateway, rate limited overall.

Owns the run: one aiohttp ``ClientSession`` for all tills, the shared :class:`RateLimiter`
(receipts per second across every till; 0 = as fast as the gateway answers), the work
split (tills take receipts from one counter until ``receipts`` are rung up) and the
:class:`~.report.SimReport`. With a seed, every till's receipts are reproducible; the shift
defaults to the start time so reruns do not collide with earlier receipts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import aiohttp

from simulators.registers.native.client import NativeClient
from simulators.registers.native.report import Recorder, SimReport
from simulators.registers.native.till import Till, TillConfig, parse_customer


class RateLimiter:
    """Spaces acquisitions ``1/rate`` seconds apart across all callers (no bursts)."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._interval = 1 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0

    async def acquire(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        slot = max(self._next, now)
        self._next = slot + self._interval
        if slot > now:
            await self._sleep(slot - now)


async def run_tills(
    gateway_url: str,
    api_key: str,
    *,
    tills: int = 8,
    receipts: int = 500,
    rate: float = 0.0,
    seed: int | None = None,
    customers: Sequence[str] = (),
    config: TillConfig | None = None,
    shift: str | None = None,
    register_prefix: str = "till",
) -> SimReport:
    """Run ``tills`` tills until ``receipts`` receipts are rung up; return what happened.

    ``customers`` are identifiers as typed at the till (``+79123456789``, ``card:123``,
    ``app_code:123456``). Never raises for gateway trouble: it is counted in the report.
    """
    if tills < 1 or receipts < 0:
        raise ValueError("tills must be >= 1 and receipts >= 0")
    config = config or TillConfig()
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    shift = shift or datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    parsed = [parse_customer(c) for c in customers if c]
    recorder = Recorder()
    limiter = RateLimiter(rate)
    remaining = receipts
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=max(2 * tills, 10))
    async with aiohttp.ClientSession(connector=connector) as session:
        client = NativeClient(session, gateway_url, api_key, slow_read_ms=config.misbehaviour.slow_read_ms)

        async def work(till: Till) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await limiter.acquire()
                await till.sell()

        async with asyncio.TaskGroup() as group:
            for i in range(tills):
                till = Till(i, client, recorder, rng=random.Random(f"{seed}:{i}"), shift=shift,
                            prefix=register_prefix, customers=parsed, config=config)
                group.create_task(work(till), name=f"sim-native-{till.register_id}")
    return recorder.report(seed=seed, tills=tills, elapsed_s=time.monotonic() - started)
