"""Benchmark of the gateway against bare baselines measured in the same run, the same way.

Run: ``.venv/bin/python bench/gateway_bench.py [--quick]`` (``make bench``; not collected by pytest).

Processes on 127.0.0.1 (see :mod:`bench_servers`): a stub core that does no work (Calculate
echoes the lines, StreamEvents acks at once), the gateway (``posgw run``, native driver, talking
to the stub core directly), the *minimal forwarder* (aiohttp → one grpc.aio Calculate → JSON)
and a bare aiohttp echo. This process is the client for all of them, with one aiohttp session
and identical request bodies. Figures, one JSON line each ``{"figure", "value", "baseline",
"ratio", "goal", "met"}``:

- ``calc_p50_ms``: sequential calculate through the native driver ÷ the forwarder (≤ 1.3);
- ``calc_p99_ms_32_tills``: p99 with 32 concurrent tills ÷ the forwarder's (≤ 1.5);
- ``durable_commits_per_s``: sales acknowledged as new per second by the gateway with 32
  concurrent tills (delivery to the core running) ÷ bare aiohttp echo requests/s at 32 (≥ 0.5,
  issue 18); medians of rounds that alternate the two. ``gateway_cpu_us_per_sale``: the gateway
  process's CPU time (user + system, from /proc) from the first of those rounds until what they
  stored is delivered, per sale stored ÷ the echo server's CPU time per request over its rounds:
  what a sale costs the gateway, intake and delivery together. ``outbox_rows_per_fsync``: mean
  rows per group commit during those rounds (from ``posgw_outbox_rows_per_commit``), baseline 1
  (one per fsync);
  ``durable_commits_per_s_delivery_paused`` (report only): one more round with the core stopped,
  so that delivery pauses once its window is in flight: the intake alone (HTTP, parsing, append);
  ``gateway_cpu_us_per_sale_intake`` (report only): the gateway's CPU per sale stored in that round
  ÷ the echo's CPU per request in the round after it;
- ``backlog_events_per_s``: a backlog of 50,000 outbox events delivered to the ack-only core ÷
  the bare bidirectional-stream echo rate (≥ 0.5), both in events/s timed at the core. The
  baseline is a bare ``grpc.aio`` client (no outbox, envelopes built beforehand) streaming the
  same envelopes to the same ack-only core one event per message, each answered at once;
- ``backlog_events_per_s_vs_batched_stream``: the same gateway rate ÷ that bare client batching
  exactly as the sender does (``StreamEventsRequest`` messages of ``gateway.sender.MESSAGE_EVENTS``
  events): the transport's ceiling, which shows what the gateway's per-event work (outbox read,
  framing the stored envelopes, delivery marks) costs (≥ 0.3, issue 18);
  ``gateway_cpu_us_per_event_delivery`` (report only): the gateway's CPU time from ready to the
  backlog delivered, per event (baseline: the bare batched client's own CPU per event, this
  process's, measured around its run);
  ``gateway_rss_mb_max``: the gateway's RSS sampled throughout (< 150 MB);
- ``calc_p99_ms_while_backlog_drains``: the core back after an outage, a backlog (``drain``
  events) to deliver and a till asking without pause: calc p99 until the backlog is delivered ÷
  the same till's p99 afterwards (≤ 1.3, issue 18; the sender yields to tills: see
  gateway.sender); ``calc_p99_ms_while_another_process_streams`` (report only): the machine's
  floor for that ratio: the gateway delivers nothing, another process (``bench_servers.py
  bare-stream``) streams as many events to the same core at the rate the gateway drained them,
  and the same till asks throughout ÷ its p99 afterwards;
- ``offline_calc_p99_ms_core_refused``: the core's port closed; baseline the forwarder's
  p99 failing against the same closed port (goal: value ≤ 5 ms);
- ``offline_calc_max_ms_core_blackholed``: the core process stopped (SIGSTOP: connections
  accepted, nothing answered); every answer within budget + 20 ms (baseline: the budget).

Bounded: a few minutes in full, seconds with ``--quick``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import bench_cli  # noqa: E402
from bench_servers import backlog_events, bare_stream  # noqa: E402

from gateway.outbox import Outbox  # noqa: E402
from gateway.receipt import Event  # noqa: E402
from gateway.sender import MESSAGE_EVENTS  # noqa: E402
from simulators.registers.native.report import percentile  # noqa: E402
from simulators.stack import Service, Stack, StackOptions, free_port  # noqa: E402

SERVERS = str(ROOT / "bench" / "bench_servers.py")
BUDGET_MS = 300
CONCURRENCY = 32


@dataclass(frozen=True)
class Sizes:
    warmup: int
    sequential: int  # per round, 4 rounds alternating gateway / forwarder
    per_till: int  # requests per till in the 32-till latency run, per round (2 rounds)
    throughput_s: float  # per round; rounds alternate gateway / echo
    rounds: int
    backlog: int
    drain: int  # backlog drained while a till asks (calc_p99_ms_while_backlog_drains)
    offline: int


FULL = Sizes(warmup=300, sequential=500, per_till=40, throughput_s=3.0, rounds=3, backlog=50_000,
             drain=20_000, offline=500)
QUICK = Sizes(warmup=5, sequential=10, per_till=2, throughput_s=0.5, rounds=1, backlog=500, drain=500,
              offline=20)


def figure(name: str, value: float, baseline: float, goal: str, met: bool) -> dict[str, Any]:
    ratio = value / baseline if baseline else 0.0
    return {"figure": name, "value": round(value, 3), "baseline": round(baseline, 3),
            "ratio": round(ratio, 3), "goal": goal, "met": bool(met)}


def calc_body(register: str, number: int) -> dict[str, Any]:
    return {
        "register_id": register, "receipt_number": str(number), "shift": "bench",
        "customer": {"phone": "+79990000001"},
        "lines": [
            {"line_id": "1", "sku": "4600001", "name": "Молоко 3,2% 1 л", "price": 8990, "qty_milli": 2000,
             "amount": 17980},
            {"line_id": "2", "sku": "4600010", "name": "Хлеб Бородинский", "price": 5490, "qty_milli": 1000,
             "amount": 5490},
        ],
    }


def sale_body(register: str, number: int) -> dict[str, Any]:
    body = calc_body(register, number)
    body |= {"fiscal_sign": str(1_000_000 + number), "redeemed_points": 0,
             "payments": [{"kind": "card", "amount": 23470}]}
    return body


class Client:
    """One aiohttp session; times each POST from send to the last byte read."""

    def __init__(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> None:
        self.session, self.headers = session, headers

    async def post(self, url: str, body: dict[str, Any]) -> tuple[float, int, Any]:
        began = time.perf_counter()
        async with self.session.post(url, json=body, headers=self.headers) as resp:
            raw = await resp.read()
            status = resp.status
        ms = (time.perf_counter() - began) * 1000
        return ms, status, (json.loads(raw) if raw and status == 200 else None)


async def sequential(client: Client, url: str, n: int, register: str, counter: list[int]) -> list[float]:
    out = []
    for _ in range(n):
        counter[0] += 1
        ms, status, _ = await client.post(url, calc_body(register, counter[0]))
        if status == 200:
            out.append(ms)
    return out


async def concurrent(client: Client, url: str, per_till: int, counter: list[int]) -> list[float]:
    out: list[float] = []

    async def till(i: int) -> None:
        for _ in range(per_till):
            counter[0] += 1
            ms, status, _ = await client.post(url, calc_body(f"c{i:02d}", counter[0]))
            if status == 200:
                out.append(ms)

    await asyncio.gather(*(till(i) for i in range(CONCURRENCY)))
    return out


async def rate(client: Client, url: str, seconds: float, start: int) -> float:
    """Sales acknowledged as new per second with CONCURRENCY workers for ``seconds``; receipt
    numbers from ``start`` (one block of numbers per call: a repeated number would be a duplicate,
    acknowledged without being stored)."""
    return (await counted_rate(client, url, seconds, start))[0]


def cpu_s(pid: int | None) -> float:
    """The CPU time (user + system, seconds) process ``pid`` has used so far (0.0 if unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def counted_rate(client: Client, url: str, seconds: float, start: int) -> tuple[float, int]:
    """(sales acknowledged as new per second, how many) as :func:`rate` counts them."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        n = start + i * 1_000_000
        while time.perf_counter() < stop_at:
            n += 1
            _, status, data = await client.post(url, sale_body(f"s{i:02d}", n))
            done += status == 200 and data is not None and data.get("duplicate") is False

    began = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    return done / (time.perf_counter() - began), done


async def fill_outbox(path: Path, events: list[Event]) -> None:
    outbox = await Outbox.open(path)
    try:
        for i in range(0, len(events), 512):
            await asyncio.gather(*(outbox.append(e) for e in events[i:i + 512]))
    finally:
        await outbox.close()


def stream_rate(stats_path: Path, since: float) -> tuple[int, float]:
    """(events, events/s) of the core's streams opened after ``since`` (wall clock)."""
    every = json.loads(stats_path.read_text())["streams"]
    streams = [s for s in every if s["first"] >= since and s["events"]]
    if not streams:
        return 0, 0.0
    events = int(sum(s["events"] for s in streams))
    span = max(s["last"] for s in streams) - min(s["first"] for s in streams)
    return events, events / span if span > 0 else 0.0


def rss_mb(pid: int | None) -> float:
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if await check():
                return True
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    return False


class Bench:
    """The processes of one run and the phases measured against them."""

    def __init__(self, sizes: Sizes, emit: Callable[[dict[str, Any]], None]) -> None:
        self.sizes, self.emit = sizes, emit
        self.work = Path(tempfile.mkdtemp(prefix="posgw-bench-"))
        self.stats = self.work / "core-stats.json"
        self.options = StackOptions(
            api_key="bench-key", through_proxy=False, calc_budget_ms=BUDGET_MS, breaker_failures=3,
            breaker_reset_s=1.0, refresh_s=60.0, log_level="ERROR",
            core_argv=[sys.executable, SERVERS, "stub-core", "--port", "{port}", "--stats", str(self.stats)],
        )
        self.stack = Stack(self.work, self.options)
        fwd_port, echo_port = free_port(), free_port()
        fwd_argv = [sys.executable, SERVERS, "forwarder", "--port", str(fwd_port),
                    "--core", self.stack.core_address]
        self.forwarder = Service("forwarder", fwd_argv, self.work / "forwarder.log",
                                 lambda: tcp_open(fwd_port))
        self.echo = Service("http-echo", [sys.executable, SERVERS, "http-echo", "--port", str(echo_port)],
                            self.work / "echo.log", lambda: tcp_open(echo_port))
        self.gw_calc = self.stack.gateway_url + "/v1/native/calculate"
        self.gw_sales = self.stack.gateway_url + "/v1/native/sales"
        self.fwd_calc = f"http://127.0.0.1:{fwd_port}/v1/native/calculate"
        self.echo_sales = f"http://127.0.0.1:{echo_port}/v1/native/sales"
        self.n = [0]
        self.block = 0
        self.client: Client

    async def run(self) -> None:
        try:
            await self.stack.start()
            await asyncio.gather(self.forwarder.start(), self.echo.start())
            connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
            async with aiohttp.ClientSession(connector=connector) as session:
                self.client = Client(session, {"Authorization": f"Bearer {self.options.api_key}"})
                if not await until(self.answers(offline=False), 20):
                    raise RuntimeError("the gateway never answered online")
                await self.latency()
                await self.throughput()
                await self.backlog()
                await self.drain_latency()
                await self.offline()
        finally:
            await asyncio.gather(self.forwarder.stop(), self.echo.stop(), return_exceptions=True)
            await self.stack.close()
            shutil.rmtree(self.work, ignore_errors=True)

    def answers(self, *, offline: bool) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            _, status, data = await self.client.post(self.gw_calc, calc_body("probe", 0))
            return status == 200 and data is not None and data["offline"] is offline

        return check

    async def latency(self) -> None:
        c, n, sz = self.client, self.n, self.sizes
        await sequential(c, self.gw_calc, sz.warmup, "w1", n)
        await sequential(c, self.fwd_calc, sz.warmup, "w2", n)
        gw: list[float] = []
        fw: list[float] = []
        for _ in range(4):  # interleaved, so a noisy neighbour hurts both alike
            gw += await sequential(c, self.gw_calc, sz.sequential, "t1", n)
            fw += await sequential(c, self.fwd_calc, sz.sequential, "t2", n)
        g50, f50 = percentile(gw, 50), percentile(fw, 50)
        self.emit(figure("calc_p50_ms", g50, f50, "ratio <= 1.3", g50 / f50 <= 1.3))
        gw, fw = [], []
        for _ in range(2):
            gw += await concurrent(c, self.gw_calc, sz.per_till, n)
            fw += await concurrent(c, self.fwd_calc, sz.per_till, n)
        g99, f99 = percentile(gw, 99), percentile(fw, 99)
        self.emit(figure("calc_p99_ms_32_tills", g99, f99, "ratio <= 1.5", g99 / f99 <= 1.5))

    async def throughput(self) -> None:
        sz, c = self.sizes, self.client
        sum_name, count_name = "posgw_outbox_rows_per_commit_sum", "posgw_outbox_rows_per_commit_count"
        before = await self.stack.metrics()
        gw: list[float] = []
        echo: list[float] = []
        gw_pid, echo_pid = self.stack.gateway.pid, self.echo.pid
        stored = answered = 0
        gw_cpu0, echo_cpu = cpu_s(gw_pid), 0.0
        for _ in range(sz.rounds):  # interleaved, so a noisy neighbour hurts both alike; medians
            per_s, n = await counted_rate(c, self.gw_sales, sz.throughput_s, self.numbers())
            gw.append(per_s)
            stored += n
            e0 = cpu_s(echo_pid)
            per_s, n = await counted_rate(c, self.echo_sales, sz.throughput_s, self.numbers())
            echo.append(per_s)
            answered += n
            echo_cpu += cpu_s(echo_pid) - e0
        after = await self.stack.metrics()
        await self.stack.wait_drained(120)  # what the rounds stored is delivered: its cost counts too
        gw_cpu = cpu_s(gw_pid) - gw_cpu0
        gw_rate, echo_rate = statistics.median(gw), statistics.median(echo)
        self.emit(figure("durable_commits_per_s", gw_rate, echo_rate, "ratio >= 0.5",
                         gw_rate / echo_rate >= 0.5))
        per_sale, per_echo = gw_cpu / max(stored, 1) * 1e6, echo_cpu / max(answered, 1) * 1e6
        self.emit(figure("gateway_cpu_us_per_sale", per_sale, per_echo, "report only", True))
        rows = after[sum_name] - before.get(sum_name, 0)
        fsyncs = after[count_name] - before.get(count_name, 0)
        per_fsync = rows / fsyncs if fsyncs else 0.0
        self.emit(figure("outbox_rows_per_fsync", per_fsync, 1.0, "reported (> 1 means group commit)",
                         per_fsync > 1))
        # Where the time goes: the same run with the core stopped, so that delivery pauses once its
        # window is in flight. What is left is the intake alone: HTTP, parsing, the durable append.
        os.kill(self.stack.core.pid or 0, signal.SIGSTOP)
        try:
            g0 = cpu_s(gw_pid)
            paused, n_paused = await counted_rate(c, self.gw_sales, sz.throughput_s, self.numbers())
            g1, e0 = cpu_s(gw_pid), cpu_s(echo_pid)
            echo_again, n_echo = await counted_rate(c, self.echo_sales, sz.throughput_s, self.numbers())
            e1 = cpu_s(echo_pid)
        finally:
            os.kill(self.stack.core.pid or 0, signal.SIGCONT)
        self.emit(figure("durable_commits_per_s_delivery_paused", paused, echo_again, "report only", True))
        intake, echo_req = (g1 - g0) / max(n_paused, 1) * 1e6, (e1 - e0) / max(n_echo, 1) * 1e6
        self.emit(figure("gateway_cpu_us_per_sale_intake", intake, echo_req, "report only", True))

    def numbers(self) -> int:
        """The first receipt number of a fresh block for :func:`rate`."""
        self.block += 1
        return self.block * 100_000_000

    async def backlog(self) -> None:
        """Fill the stopped gateway's outbox, start it, time the delivery at the core."""
        stack, size = self.stack, self.sizes.backlog
        await stack.wait_drained(60)
        await stack.gateway.stop()
        events = backlog_events(size)
        await fill_outbox(stack.gateway_dir / "outbox.db", events)
        mark = time.time()
        await stack.gateway.start(wait=False)
        rss: list[float] = []
        drained = False
        ready_cpu: float | None = None  # the gateway's CPU time when it first answered (imports done)
        deadline = time.monotonic() + 240
        while not drained and time.monotonic() < deadline:
            rss.append(rss_mb(stack.gateway.pid))
            try:
                drained = (await stack.health()).get("pending") == 0
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                await asyncio.sleep(0.1)
                continue
            if ready_cpu is None:  # drained by its first answer (a small backlog): only the whole
                # process's CPU (imports included) bounds the delivery's, an over-estimate, never 0
                ready_cpu = 0.0 if drained else cpu_s(stack.gateway.pid)
            await asyncio.sleep(0.1)
        total_cpu = cpu_s(stack.gateway.pid)
        delivery_cpu = total_cpu - (ready_cpu or 0.0)
        if delivery_cpu < 2 / os.sysconf("SC_CLK_TCK"):  # below the clock tick's resolution (a quick
            delivery_cpu = total_cpu  # backlog): the whole process's CPU bounds it, an over-estimate
        await asyncio.sleep(0.5)  # the stats file is written every 0.2 s
        delivered, gw_stream = stream_rate(self.stats, mark)
        if not drained or delivered < size:
            raise RuntimeError(f"backlog not delivered: {delivered} of {size} in 240 s")
        bare: dict[int, float] = {}
        bare_cpu = 0.0
        for per_message in (1, MESSAGE_EVENTS):
            mark = time.time()
            c0 = own_cpu_s()
            await bare_stream(stack.core_address, events, per_message)
            bare_cpu = own_cpu_s() - c0  # (the last: the batched client, envelopes built included)
            await asyncio.sleep(0.5)
            bare[per_message] = stream_rate(self.stats, mark)[1]
        print("backlog baselines: a bare grpc.aio StreamEvents client streaming the same envelopes to the "
              f"same ack-only core, one event per message (the bare stream echo rate) and {MESSAGE_EVENTS} "
              "per message (the transport's ceiling); events/s timed at the core",
              file=sys.stderr, flush=True)
        per_event = bare[1]
        self.emit(figure("backlog_events_per_s", gw_stream, per_event, "ratio >= 0.5",
                         gw_stream / per_event >= 0.5))
        ceiling = bare[MESSAGE_EVENTS]
        self.emit(figure("backlog_events_per_s_vs_batched_stream", gw_stream, ceiling, "ratio >= 0.3",
                         gw_stream / ceiling >= 0.3))
        self.emit(figure("gateway_cpu_us_per_event_delivery", delivery_cpu / size * 1e6,
                         bare_cpu / size * 1e6, "report only", True))
        peak = max(rss)
        self.emit(figure("gateway_rss_mb_max", peak, 150.0, "value < 150 MB", peak < 150.0))

    async def drain_latency(self) -> None:
        """The worst minute: the core is back after an outage with a backlog to deliver, and a till
        keeps asking. Calc p99 while the backlog drains ÷ calc p99 of the same till once it is done.
        Then the machine's own share (:meth:`machine_floor`) at the rate the gateway drained."""
        stack, c, n, size = self.stack, self.client, self.n, self.sizes.drain
        await stack.wait_drained(60)
        await stack.gateway.stop()
        await fill_outbox(stack.gateway_dir / "outbox.db", backlog_events(size, "drain"))
        await stack.gateway.start()
        draining: list[float] = []
        began = time.monotonic()
        deadline = began + 240
        while time.monotonic() < deadline:
            draining += await sequential(c, self.gw_calc, 25, "d1", n)
            if (await stack.health()).get("pending") == 0:
                break
        took = time.monotonic() - began
        idle = await sequential(c, self.gw_calc, max(len(draining), 100), "d2", n)
        p99, idle99 = percentile(draining, 99), percentile(idle, 99)
        self.emit(figure("calc_p99_ms_while_backlog_drains", p99, idle99, "ratio <= 1.3",
                         p99 / idle99 <= 1.3))
        floor99, floor_idle99 = await self.machine_floor(size, size / took, len(draining))
        self.emit(figure("calc_p99_ms_while_another_process_streams", floor99, floor_idle99,
                         "report only: this machine's floor for the ratio above", True))

    async def machine_floor(self, events: int, rate: float, asks: int) -> tuple[float, float]:
        """(calc p99 through the idle gateway while another process streams ``events`` to the same
        core at ``rate`` events/s, the same till's p99 once it is done), at least ``asks`` calcs
        each. The gateway delivers nothing meanwhile: what the ratio shows is the core answering
        a stream beside the till on this machine's cores, which no sender can avoid."""
        stack, c, n = self.stack, self.client, self.n
        await stack.wait_drained(60)
        argv = [sys.executable, SERVERS, "bare-stream", "--core", stack.core_address, "--events", str(events),
                "--rate", f"{rate:.1f}"]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line.startswith(b"READY"):
                raise RuntimeError(f"bare-stream did not connect: {line!r}")
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            beside: list[float] = []
            while proc.returncode is None or len(beside) < asks:
                beside += await sequential(c, self.gw_calc, 25, "m1", n)
                if proc.returncode is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(proc.wait(), 0.001)
            done = (await proc.stdout.read()).decode()
            if proc.returncode != 0 or not done.startswith("DONE"):
                raise RuntimeError(f"bare-stream failed (exit {proc.returncode}): {done[-300:]}")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        idle = await sequential(c, self.gw_calc, max(len(beside), 100), "m2", n)
        return percentile(beside, 99), percentile(idle, 99)

    async def offline(self) -> None:
        """The core refusing connections (process gone), then black-holed (process stopped)."""
        stack, c, n, count = self.stack, self.client, self.n, self.sizes.offline
        await stack.core.kill()
        await until(self.answers(offline=True), 10)
        refused = await sequential(c, self.gw_calc, count, "o1", n)
        fwd_refused = []
        for _ in range(count):
            n[0] += 1
            ms, _, _ = await c.post(self.fwd_calc, calc_body("o2", n[0]))  # a 500 after the refused call
            fwd_refused.append(ms)
        p99, fp99 = percentile(refused, 99), percentile(fwd_refused, 99)
        self.emit(figure("offline_calc_p99_ms_core_refused", p99, fp99, "value <= 5 ms", p99 <= 5.0))

        await stack.core.start()
        await until(self.answers(offline=False), 20)
        os.kill(stack.core.pid or 0, signal.SIGSTOP)
        try:
            holed = await sequential(c, self.gw_calc, max(20, count // 5), "o3", n)
        finally:
            os.kill(stack.core.pid or 0, signal.SIGCONT)
        worst = max(holed)
        self.emit(figure("offline_calc_max_ms_core_blackholed", worst, float(BUDGET_MS),
                         f"value <= {BUDGET_MS + 20} ms", worst <= BUDGET_MS + 20))


async def tcp_open(port: int) -> bool:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    return True


def main() -> int:
    return bench_cli.main("gateway benchmark (JSON lines on stdout)",
                          "a few requests per figure (smoke test)",
                          lambda quick, emit: Bench(QUICK if quick else FULL, emit).run())


if __name__ == "__main__":
    sys.exit(main())
