"""The busy shop: many tills, each asking calculate then committing one sale a second, while the
core link flaps and a backlog drains after each outage (issue 18).

Run: ``.venv/bin/python bench/shop_bench.py [--quick]`` (``make bench``; not collected by pytest).

Processes on 127.0.0.1: the ack-only stub core of :mod:`bench_servers` behind the stack's fault
proxy (:class:`simulators.stack.Stack`, ``through_proxy``), and the gateway (``posgw run``,
native driver). This process runs the tills: each one, once a second (staggered over the
second), POSTs a calculate and then the sale of the same receipt, and times both answers.

Two phases, the same tills in both:

1. *calm*: the core always reachable, delivery keeping up: the baseline;
2. *flapping*: the link to the core cut for ``down_s`` every ``period_s`` (new connections
   refused, live ones reset): the tills are answered offline and their sales pile up in the
   outbox, then the backlog drains while they go on.

Figures, one JSON line each ``{"figure", "value", "baseline", "ratio", "goal", "met"}`` (report
only: the machine is shared, the ratio is what to read):

- ``shop_calc_p50_ms`` / ``shop_calc_p99_ms``: calculate latency while flapping ÷ calm;
- ``shop_commit_p50_ms`` / ``shop_commit_p99_ms``: the sale's acknowledgement likewise;
- ``shop_cpu_us_per_sale``: the gateway process's CPU time (user + system, /proc) over the whole
  flapping phase and the drain after it, per sale stored ÷ the same over the calm phase;
- ``shop_cpu_us_per_sale_intake``: the gateway's CPU per sale during the outages, when nothing
  is delivered (what taking a sale in costs; the sender only retries its stream) ÷ calm per sale;
- ``shop_cpu_us_per_event_delivery``: the rest of the flapping phase's CPU (its total minus the
  intake's per sale times its sales) per event delivered; baseline the intake figure;
- ``shop_rss_mb_max``: the gateway's peak RSS, baseline its RSS after the calm phase;
- ``shop_sales_unanswered``: sales not acknowledged with 200 (value), out of the sales tried
  (baseline); the goal is none;
- ``shop_sales_undelivered``: after the last drain, the sales stored and not known delivered
  (value: stored as new minus delivered, by ``posgw_delivered_total{kind="sale"}``, or, if more,
  still pending + waiting for their sale + in the operator queue), out of the sales stored as new
  (baseline); the goal is none, and the run fails (exit 1, after every figure) when it is not met:
  a figure measured on sales that never reached the core means nothing.

Bounded: about ``calm_s + soak_s`` plus the drain (4 minutes in full), seconds with ``--quick``.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import bench_cli  # noqa: E402
from gateway_bench import SERVERS, Client, calc_body, cpu_s, figure, rss_mb, sale_body  # noqa: E402

from simulators.registers.native.report import percentile  # noqa: E402
from simulators.stack import Stack, StackOptions  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    tills: int
    calm_s: float
    soak_s: float
    period_s: float  # one outage starts every period_s
    down_s: float  # and lasts down_s


FULL = Sizes(tills=64, calm_s=40.0, soak_s=180.0, period_s=30.0, down_s=10.0)
QUICK = Sizes(tills=8, calm_s=3.0, soak_s=6.0, period_s=3.0, down_s=1.0)


@dataclass
class Samples:
    """What the tills saw in one phase."""

    calc_ms: list[float] = field(default_factory=list)
    commit_ms: list[float] = field(default_factory=list)
    tried: int = 0
    stored: int = 0  # acknowledged as new
    unanswered: int = 0  # a sale not answered 200


class Shop:
    def __init__(self, sizes: Sizes, emit: bench_cli.Emit) -> None:
        self.sizes, self.emit = sizes, emit
        self.work = Path(tempfile.mkdtemp(prefix="posgw-shop-"))
        self.options = StackOptions(
            api_key="shop-key", through_proxy=True, calc_budget_ms=300, breaker_failures=3,
            breaker_reset_s=1.0, refresh_s=60.0, log_level="ERROR",
            core_argv=[sys.executable, SERVERS, "stub-core", "--port", "{port}"],
        )
        self.stack = Stack(self.work, self.options)
        self.calc_url = self.stack.gateway_url + "/v1/native/calculate"
        self.sales_url = self.stack.gateway_url + "/v1/native/sales"
        self.numbers = 0
        self.rss: list[float] = []
        self.down = False  # the link is cut now
        self.down_stored = 0  # sales stored while it was cut
        self.down_cpu = 0.0  # the gateway's CPU time while it was cut

    async def run(self) -> None:
        try:
            await self.stack.start()
            connector = aiohttp.TCPConnector(limit=self.sizes.tills * 2)
            async with aiohttp.ClientSession(connector=connector) as session:
                client = Client(session, {"Authorization": f"Bearer {self.options.api_key}"})
                await self.phases(client)
        finally:
            await self.stack.close()
            shutil.rmtree(self.work, ignore_errors=True)

    async def phases(self, client: Client) -> None:
        sz, pid = self.sizes, self.stack.gateway.pid
        warm = await self.tills(client, 1.0, Samples())  # warm-up: connections, first answers
        await self.stack.wait_drained(60)
        c0 = cpu_s(pid)
        calm = await self.tills(client, sz.calm_s, Samples())
        await self.stack.wait_drained(60)
        calm_cpu = cpu_s(pid) - c0
        calm_rss = rss_mb(pid)
        c0 = cpu_s(pid)
        flapping = Samples()
        await asyncio.gather(self.tills(client, sz.soak_s, flapping), self.flap(sz.soak_s))
        await self.stack.wait_drained(240)
        soak_cpu = cpu_s(pid) - c0
        per_calm = calm_cpu / max(calm.stored, 1) * 1e6
        self.emit_latency("shop_calc", flapping.calc_ms, calm.calc_ms)
        self.emit_latency("shop_commit", flapping.commit_ms, calm.commit_ms)
        self.emit(figure("shop_cpu_us_per_sale", soak_cpu / max(flapping.stored, 1) * 1e6, per_calm,
                         "report only", True))
        intake = self.down_cpu / max(self.down_stored, 1) * 1e6
        self.emit(figure("shop_cpu_us_per_sale_intake", intake, per_calm, "report only", True))
        delivery = (soak_cpu - intake / 1e6 * flapping.stored) / max(flapping.stored, 1) * 1e6
        self.emit(figure("shop_cpu_us_per_event_delivery", max(delivery, 0.001), intake, "report only", True))
        self.emit(figure("shop_rss_mb_max", max(self.rss), calm_rss, "report only", True))
        unanswered = calm.unanswered + flapping.unanswered
        self.emit(figure("shop_sales_unanswered", unanswered, calm.tried + flapping.tried, "value == 0",
                         unanswered == 0))
        stored = warm.stored + calm.stored + flapping.stored
        missing, why = await self.delivery(stored)
        self.emit(figure("shop_sales_undelivered", missing, stored, "value == 0", not missing))
        if missing:
            raise RuntimeError("sales stored and not delivered: " + "; ".join(why))

    async def delivery(self, stored: int) -> tuple[int, list[str]]:
        """What of the ``stored`` sales (acknowledged as new) is not known delivered, once the
        outbox drained (:func:`undelivered` of the gateway's figures)."""
        pending = await self.stack.wait_drained(60)
        health = await self.stack.health()
        queue = await self.stack.operator_queue()
        metrics = await self.stack.metrics()
        delivered = metrics.get("posgw_delivered_total{kind=sale}", 0.0)
        return undelivered(stored=stored, delivered=int(delivered), pending=pending,
                           waiting=int(health.get("waiting_for_sale", 0)), queued=len(queue))

    def emit_latency(self, name: str, busy: list[float], calm: list[float]) -> None:
        for q in (50, 99):
            self.emit(figure(f"{name}_p{q}_ms", percentile(busy, q), percentile(calm, q), "report only",
                             True))

    async def tills(self, client: Client, seconds: float, out: Samples) -> Samples:
        """Every till, once a second for ``seconds``: calculate, then the sale of that receipt."""
        stop_at = time.monotonic() + seconds

        async def till(i: int) -> None:
            register = f"shop{i:02d}"
            await asyncio.sleep(random.random())  # staggered over the second
            next_at = time.monotonic()
            while next_at < stop_at:
                self.numbers += 1
                n = self.numbers
                ms, status, _ = await client.post(self.calc_url, calc_body(register, n))
                if status == 200:
                    out.calc_ms.append(ms)
                out.tried += 1
                ms, status, data = await client.post(self.sales_url, sale_body(register, n))
                if status == 200:
                    out.commit_ms.append(ms)
                    new = data is not None and data.get("duplicate") is False
                    out.stored += new
                    if new and self.down:
                        self.down_stored += 1
                else:
                    out.unanswered += 1
                self.rss.append(rss_mb(self.stack.gateway.pid))
                next_at += 1.0
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        await asyncio.gather(*(till(i) for i in range(self.sizes.tills)))
        return out

    async def flap(self, seconds: float) -> None:
        """Cut the core link for ``down_s`` every ``period_s`` (the first cut after one period's
        uptime), counting the gateway's CPU while it is cut."""
        sz, pid = self.sizes, self.stack.gateway.pid
        stop_at = time.monotonic() + seconds
        while time.monotonic() + sz.period_s - sz.down_s < stop_at:
            await asyncio.sleep(sz.period_s - sz.down_s)
            await self.stack.core_outage()
            self.down, c0 = True, cpu_s(pid)
            await asyncio.sleep(sz.down_s)
            self.down = False
            self.down_cpu += cpu_s(pid) - c0
            await self.stack.core_back()


def undelivered(*, stored: int, delivered: int, pending: int, waiting: int,
                queued: int) -> tuple[int, list[str]]:
    """How many of the ``stored`` sales are not known delivered, and why: still pending (-1: the
    outbox's count could not be read), waiting for their sale, in the operator queue, or fewer
    delivered than stored (more delivered than stored is fine: a sale a till gave up on may
    still have been stored). (0, []) when every stored sale was delivered."""
    why = [text for n, text in ((pending, f"{pending} still pending in the outbox"),
                                (waiting, f"{waiting} waiting for their sale"),
                                (queued, f"{queued} in the operator queue"),
                                (stored - delivered, f"{delivered} delivered of {stored} stored")) if n > 0]
    if pending < 0:
        why.insert(0, "the outbox's pending count could not be read")
    count = max(stored - delivered, max(pending, 0) + waiting + queued, 1 if pending < 0 else 0)
    return count, why


def main() -> int:
    return bench_cli.main("busy-shop soak (JSON lines on stdout)", "8 tills for seconds (smoke test)",
                          lambda quick, emit: Shop(QUICK if quick else FULL, emit).run())


if __name__ == "__main__":
    sys.exit(main())

