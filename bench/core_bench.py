"""Benchmark of the reference core against a bare gRPC echo service, measured the same way.

Run: ``.venv/bin/python bench/core_bench.py [--quick]`` (not collected by pytest).

Both servers run in their own subprocess on 127.0.0.1: the reference core (``posgw core``,
seed002, SQLite in a temporary directory) and a tiny ``grpc.aio`` service whose one unary
method echoes its request bytes. The client side is identical for both: the same channels,
deadlines and concurrency. Figures, one JSON line each on stdout:

- ``calculate_p50_us`` / ``calculate_p99_us``: sequential Calculate latency after warm-up,
  baseline the echo's latency for a payload of the same size, sampled in alternating blocks
  (same count each) so both see the same background load; goals: p50 ≤ 2× echo
  (loyalty-rules / DESIGN: the till waits), p99 ≤ 5× echo (ours: keeps the tail honest);
- ``commit_throughput_per_s``: Commits per second with 16 concurrent clients (one channel
  each, distinct idempotency keys, several customers), baseline the echo's throughput at the
  same concurrency; goal ≥ 500/s on SQLite.

``--postgres``: the same three figures through a core (one replica) over a throw-away PostgreSQL
(Calculate p50 through a replica ÷ the echo). ``--cluster``: the replicas' figures instead
(:mod:`bench.core_cluster`, PostgreSQL).

Each line: ``{"figure", "value", "baseline", "ratio", "goal", "met"}``. The whole run is
bounded (well under 60 s; ``--quick`` makes a handful of calls for the smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb  # noqa: E402
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc  # noqa: E402

ECHO_METHOD = "/posgw.bench.Echo/Echo"
DEADLINE_S = 5.0
START_TIMEOUT_S = 20.0
RUN_BUDGET_S = 55.0
CONCURRENCY = 16
CUSTOMERS = 8
BLOCKS = 10  # Calculate and echo latency are sampled in alternating blocks


@dataclass(frozen=True)
class Sizes:
    warmup: int
    sequential: int
    throughput_s: float


FULL = Sizes(warmup=300, sequential=3000, throughput_s=4.0)
QUICK = Sizes(warmup=3, sequential=10, throughput_s=0.3)


# ---------------------------------------------------------------- the echo service (subprocess)


def _identity(b: bytes) -> bytes:
    return b


async def serve_echo() -> None:
    """Serve the echo method on a free port; print ``LISTENING host:port``; stop on SIGTERM."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "posgw.bench.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(echo, _identity, _identity)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"LISTENING 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1)


# ---------------------------------------------------------------- subprocess management


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(proc: subprocess.Popen[str], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {START_TIMEOUT_S}s")


@contextmanager
def subprocess_server(argv: list[str], port: int, log: Path) -> Iterator[str]:
    """Start ``argv`` (stdout/stderr to ``log``), wait until ``port`` accepts, stop it at exit."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        _wait_for_port(proc, port, log)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def echo_server(workdir: Path) -> Iterator[str]:
    log = workdir / "echo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--echo-server"],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            cwd=ROOT,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the child prints its address first thing
        m = re.match(r"LISTENING (\S+)", line)
        if m is None:
            raise RuntimeError(f"echo server did not start: {line!r} {log.read_text(errors='replace')}")
        yield m.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def posgw_argv() -> list[str]:
    exe = Path(sys.executable).parent / "posgw"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli"]


@contextmanager
def database(workdir: Path, postgres: bool) -> Iterator[str]:
    """The core's database URL: SQLite in ``workdir``, or a database on a throw-away PostgreSQL
    (tests/pg.py: fsync off, as in the cluster figures) that is stopped afterwards."""
    if not postgres:
        yield f"sqlite:///{workdir / 'core.db'}"
        return
    from tests.pg import start_server

    server = start_server()
    try:
        yield server.create_database("bench")
    finally:
        server.stop()


@contextmanager
def core_server(workdir: Path, db_url: str) -> Iterator[str]:
    port = _free_port()
    argv = [
        *posgw_argv(),
        "core",
        "--program",
        str(ROOT / "config" / "programs" / "seed002.toml"),
        "--db",
        db_url,
        "--listen",
        f"127.0.0.1:{port}",
    ]
    with subprocess_server(argv, port, workdir / "core.log") as address:
        yield address


# ---------------------------------------------------------------- measurement


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sequential(call: Callable[[], Awaitable[object]], sizes: Sizes) -> list[float]:
    for _ in range(sizes.warmup):
        await call()
    samples = []
    for _ in range(sizes.sequential):
        t = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - t) * 1e6)
    return samples


async def interleaved(
    calls: list[Callable[[], Awaitable[object]]], sizes: Sizes, blocks: int = BLOCKS
) -> list[list[float]]:
    """Like :func:`sequential` for each of ``calls``, in alternating blocks: the same number of
    samples each, taken under the same background load (the machine is shared, and load that
    changes between two back-to-back runs moved the ratio by ±0.3×)."""
    for call in calls:
        for _ in range(sizes.warmup):
            await call()
    samples: list[list[float]] = [[] for _ in calls]
    per_block = max(1, sizes.sequential // blocks)
    for _ in range(max(1, sizes.sequential // per_block)):
        for call, out in zip(calls, samples, strict=True):
            for _ in range(per_block):
                t = time.perf_counter()
                await call()
                out.append((time.perf_counter() - t) * 1e6)
    return samples


async def throughput(calls: list[Callable[[int], Awaitable[object]]], duration_s: float) -> float:
    """Completed calls per second with one worker per entry of ``calls``."""
    done = 0
    stop_at = time.perf_counter() + duration_s

    async def worker(call: Callable[[int], Awaitable[object]]) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop_at:
            await call(i)
            i += 1
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in calls))
    return done / (time.perf_counter() - start)


def figure(name: str, value: float, baseline: float, goal: str, met: bool) -> dict[str, object]:
    ratio = value / baseline if baseline else float("inf")
    return {
        "figure": name,
        "value": round(value, 1),
        "baseline": round(baseline, 1),
        "ratio": round(ratio, 3),
        "goal": goal,
        "met": bool(met),
    }


async def measure(core_addr: str, echo_addr: str, sizes: Sizes,
                  db: str = "SQLite") -> list[dict[str, object]]:
    core_channels = [grpc.aio.insecure_channel(core_addr) for _ in range(CONCURRENCY)]
    echo_channels = [grpc.aio.insecure_channel(echo_addr) for _ in range(CONCURRENCY)]
    try:
        await asyncio.gather(
            *(asyncio.wait_for(ch.channel_ready(), START_TIMEOUT_S) for ch in core_channels + echo_channels)
        )
        stubs = [pb_grpc.LoyaltyCoreServiceStub(ch) for ch in core_channels]
        echoes = [ch.unary_unary(ECHO_METHOD) for ch in echo_channels]  # bytes in, bytes out
        run = f"{os.getpid()}-{time.time_ns()}"
        customers = []
        for i in range(CUSTOMERS):
            answer = await stubs[0].RegisterCustomer(
                pb.RegisterCustomerRequest(phone=f"+7916{os.getpid() % 1000:03d}{i:04d}", name=f"Bench {i}"),
                timeout=DEADLINE_S,
            )
            customers.append(answer.customer)

        def draft(cust: pb.Customer, number: str) -> pb.ReceiptDraft:
            lines = [
                pb.Line(line_id=f"L{j}", sku=f"SKU{j}", qty_milli=1000, amount=10_000 * j) for j in (1, 2, 3)
            ]
            return pb.ReceiptDraft(
                customer=pb.CustomerRef(phone=cust.phone),
                lines=lines,
                register_id="BENCH",
                receipt_number=number,
            )

        calc_req = pb.CalculateRequest(draft=draft(customers[0], "calc"))
        payload = calc_req.SerializeToString()

        async def calc() -> object:
            return await stubs[0].Calculate(calc_req, timeout=DEADLINE_S)

        async def echo() -> object:
            return await echoes[0](payload, timeout=DEADLINE_S)

        calc_lat, echo_lat = await interleaved([calc, echo], sizes)

        def committer(worker: int) -> Callable[[int], Awaitable[object]]:
            async def call(i: int) -> object:
                cust = customers[(worker + i) % CUSTOMERS]
                req = pb.CommitRequest(
                    idempotency_key=f"B-{run}-{worker}-{i}", draft=draft(cust, f"{worker}-{i}")
                )
                return await stubs[worker].Commit(req, timeout=DEADLINE_S)

            return call

        def echoer(worker: int) -> Callable[[int], Awaitable[object]]:
            commit_payload = pb.CommitRequest(
                idempotency_key=f"B-{run}-0-0", draft=draft(customers[0], "0-0")
            ).SerializeToString()

            async def call(i: int) -> object:
                return await echoes[worker](commit_payload, timeout=DEADLINE_S)

            return call

        commit_tp = await throughput([committer(w) for w in range(CONCURRENCY)], sizes.throughput_s)
        echo_tp = await throughput([echoer(w) for w in range(CONCURRENCY)], sizes.throughput_s)
    finally:
        await asyncio.gather(*(ch.close() for ch in core_channels + echo_channels))

    p50, e50 = statistics.median(calc_lat), statistics.median(echo_lat)
    p99, e99 = percentile(calc_lat, 0.99), percentile(echo_lat, 0.99)
    return [
        figure("calculate_p50_us", p50, e50, "<= 2x echo p50", p50 <= 2 * e50),
        figure("calculate_p99_us", p99, e99, "<= 5x echo p99", p99 <= 5 * e99),
        figure(
            "commit_throughput_per_s", commit_tp, echo_tp, f">= 500/s (16 clients, {db})", commit_tp >= 500
        ),
    ]


async def bench(sizes: Sizes, postgres: bool = False) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="posgw-bench-") as tmp:
        workdir = Path(tmp)
        with (database(workdir, postgres) as db_url, core_server(workdir, db_url) as core_addr,
              echo_server(workdir) as echo_addr):
            db = "PostgreSQL" if postgres else "SQLite"
            return await asyncio.wait_for(measure(core_addr, echo_addr, sizes, db), RUN_BUDGET_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few calls only (smoke test)")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--postgres", action="store_true",
                        help="the same figures through a core (one replica) over a throw-away PostgreSQL")
    parser.add_argument("--cluster", action="store_true",
                        help="commits/s through 1, 2, 3 replicas over PostgreSQL ÷ a bare client")
    args = parser.parse_args(argv)
    if args.echo_server:
        asyncio.run(serve_echo())
        return 0
    if args.cluster:
        from bench.core_cluster import CLUSTER_FULL, CLUSTER_QUICK, cluster_figures

        for fig in asyncio.run(cluster_figures(CLUSTER_QUICK if args.quick else CLUSTER_FULL)):
            print(json.dumps(fig, ensure_ascii=False), flush=True)
        return 0
    for fig in asyncio.run(bench(QUICK if args.quick else FULL, postgres=args.postgres)):
        print(json.dumps(fig, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
