"""The load generator: N tills selling concurrently against one gateway, rate limited overall.

Owns the shared :class:`RateLimiter` (receipts per second across every till; 0 = as fast as
the gateway answers) and the native run's defaults; the session, the work split and the
report are :func:`~simulators.registers.runner.run_fleet`'s. With a seed, every till's
receipts are reproducible; the shift defaults to the start time so reruns do not collide
with earlier receipts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from simulators.registers.native.client import NativeClient
from simulators.registers.native.report import Recorder, SimReport
from simulators.registers.native.till import Till, TillConfig, parse_customer
from simulators.registers.runner import resolve_seed, run_fleet


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
    config = config or TillConfig()
    seed = resolve_seed(seed)
    shift = shift or datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    parsed = [parse_customer(c) for c in customers if c]

    def build(i: int, client: NativeClient, recorder: Recorder) -> Till:
        return Till(i, client, recorder, rng=random.Random(f"{seed}:{i}"), shift=shift,
                    prefix=register_prefix, customers=parsed, config=config)

    return await run_fleet(
        name="native", tills=tills, receipts=receipts, seed=seed, build=build, pace=RateLimiter(rate).acquire,
        connect=lambda session: NativeClient(
            session, gateway_url, api_key, slow_read_ms=config.misbehaviour.slow_read_ms
        ),
    )
