"""Overload: the gateway's memory and answers when tills ask ten times what it admits at once.

A real gateway process (native driver, reference core) admits ``max_requests_in_flight = 32``;
320 tills then calculate and sell without pause. Figures (one JSON line each):

- ``rss_peak_vs_idle``: the gateway's peak resident memory under the overload ÷ its resident
  memory idle, measured in the same run (goal: ≤ 1.5, memory stays bounded);
- ``busy_share``: the share of answers that were the fast "retry" (503, Retry-After), report only;
- ``admitted_p99_ms_vs_unloaded``: p99 of admitted calculate answers under overload ÷ p99 of the
  same calculate with one till, report only.

Run: ``python bench/overload_bench.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_cli import Emit, main

from simulators.stack import Stack, StackOptions

ADMITTED = 32
TILLS = ADMITTED * 10


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def body(till: int, n: int) -> dict[str, Any]:
    return {"register_id": f"ov-{till}", "receipt_number": str(n), "shift": "1",
            "customer": {"card": "2000012345"},
            "lines": [{"line_id": "1", "sku": "4600001", "name": "Кофе", "price": 15_000, "qty_milli": 1000,
                       "amount": 15_000}]}


async def till(session: aiohttp.ClientSession, url: str, key: str, n: int, stop: float,
               out: dict[str, list[float]]) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    i = 0
    while time.monotonic() < stop:
        i += 1
        for path in ("calculate", "sales"):
            began = time.perf_counter()
            try:
                async with session.post(f"{url}/v1/native/{path}", json=body(n, i), headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except aiohttp.ClientError:
                out["errors"].append(1.0)
                continue
            ms = (time.perf_counter() - began) * 1000
            if status == 503:
                out["busy"].append(ms)
            elif path == "calculate":
                out["calc"].append(ms)
            else:
                out["sale"].append(ms)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


async def bench(quick: bool, emit: Emit) -> None:
    seconds = 3.0 if quick else 20.0
    with tempfile.TemporaryDirectory() as tmp:
        options = StackOptions(gateway_extra=f"max_requests_in_flight = {ADMITTED}\nmax_connections = 1024")
        async with Stack(Path(tmp), options) as stack:
            pid = stack.gateway.pid
            assert pid is not None
            connector = aiohttp.TCPConnector(limit=TILLS + 10)
            async with aiohttp.ClientSession(connector=connector) as session:
                alone: dict[str, list[float]] = {"calc": [], "sale": [], "busy": [], "errors": []}
                warm_until = time.monotonic() + seconds / 3
                await till(session, stack.gateway_url, options.api_key, 0, warm_until, alone)
                idle = rss_kib(pid)
                out: dict[str, list[float]] = {"calc": [], "sale": [], "busy": [], "errors": []}
                stop = time.monotonic() + seconds
                tasks = [asyncio.create_task(till(session, stack.gateway_url, options.api_key, n, stop, out))
                         for n in range(1, TILLS + 1)]
                peak = idle
                while not all(t.done() for t in tasks):
                    peak = max(peak, rss_kib(pid))
                    await asyncio.sleep(0.2)
                await asyncio.gather(*tasks)
    answered = len(out["calc"]) + len(out["sale"]) + len(out["busy"])
    emit({"figure": "rss_peak_vs_idle", "value": peak, "baseline": idle, "ratio": round(peak / idle, 3),
          "goal": 1.5, "met": peak / idle <= 1.5, "unit": "KiB"})
    emit({"figure": "busy_share", "value": len(out["busy"]), "baseline": answered,
          "ratio": round(len(out["busy"]) / max(1, answered), 3), "goal": None, "met": None,
          "errors": len(out["errors"])})
    loaded, unloaded = p99(out["calc"]), p99(alone["calc"])
    emit({"figure": "admitted_p99_ms_vs_unloaded", "value": round(loaded, 2), "baseline": round(unloaded, 2),
          "ratio": round(loaded / max(unloaded, 0.001), 3), "goal": None, "met": None})


if __name__ == "__main__":
    raise SystemExit(main(__doc__ or "", "a few seconds instead of twenty", bench))
