"""SBIS polling cost and delay: requests per hour for 4 registers, upload-to-accrual delay (p50, p99).

Run: ``.venv/bin/python bench/sbis_bench.py [--quick]`` (``make bench``; not collected by pytest).

1. **Requests per hour** (in-process, simulated clock): the driver's :class:`drivers.sbis.driver.Source`
   with the default options (interval 60 s, drive listing every 900 s, token renewal every 1200 s)
   against the fake SBIS cloud with 4 registers selling every few minutes; one hour of rounds is
   played with a clock advanced by ``interval_s`` per round, and every request the cloud received
   (auth included) is counted. Baseline: the minimum for this shape, one docs request per drive
   and round (4 × 60 = 240); ratio = measured ÷ baseline.
2. **Upload -> accrual delay** (real processes): the fake cloud ↔ gateway (``posgw run``, sbis
   driver, ``interval_s`` = 1 s, other options default) ↔ reference core. Receipts are uploaded at
   random moments; the delay is the time from the upload until the core applied the operation (its
   own ``created_at``, read from its SQLite file). Baseline, measured in the same run: the delay until the
   driver's next docs request for that drive after the upload (the polling wait alone); ratio =
   total ÷ polling wait (p50). At the default 60 s interval the polling wait dominates: expect
   about 30 s p50 and 60 s p99 plus the same pipeline share.

Each figure is one JSON line ``{"figure", "value", "baseline", "ratio", "goal", "met"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, select  # noqa: E402

from drivers.sbis.client import Client  # noqa: E402
from drivers.sbis.config import Config  # noqa: E402
from drivers.sbis.driver import Source  # noqa: E402
from gateway.poll import PollOptions, poll_page  # noqa: E402
from simulators.core.tables import Operation  # noqa: E402
from simulators.registers.sbis.cloud import FakeSbis, receipt  # noqa: E402
from simulators.stack import Stack, StackOptions  # noqa: E402
from tests.drivers.fake_context import FakeContext  # noqa: E402

REGS = [(f"00065432100{i:05d}", f"73804407001{i:05d}") for i in range(1, 5)]


def figure(name: str, value: float, baseline: float, goal: float | None = None) -> None:
    ratio = value / baseline if baseline else float("inf")
    print(
        json.dumps(
            {
                "figure": name,
                "value": round(value, 3),
                "baseline": round(baseline, 3),
                "ratio": round(ratio, 3),
                "goal": goal,
                "met": None if goal is None else ratio <= goal,
            }
        )
    )


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset

    def mono(self) -> float:
        return time.monotonic() + self.offset


async def requests_per_hour() -> None:
    sbis = FakeSbis(token_ttl_s=10 * 3600)
    now_raw = int(time.time()) + 3 * 3600
    for reg, fn in REGS:
        sbis.add_register(reg, fn, now_raw - 30 * 86_400)
    clock = Clock()
    async with sbis.serving(), aiohttp.ClientSession() as session:
        cfg = Config.model_validate(
            {
                "app_client_id": "app-id",
                "app_secret": "app-secret",
                "secret_key": "app-key",
                "auth_url": sbis.url,
                "api_url": sbis.url,
                "inn": sbis.inn,
                "max_rps": 1000.0,
            }
        )
        ctx = FakeContext("sbis")
        source = Source(ctx, Client(session, cfg, clock=clock.mono), cfg, clock=clock.wall)
        fd = {fn: 0 for _, fn in REGS}
        opts = PollOptions(interval_s=cfg.interval_s)
        await poll_page(ctx, source, opts)  # the first round: listings and the first token
        start = len(sbis.requests)
        for _ in range(int(3600 / cfg.interval_s)):
            clock.offset += cfg.interval_s
            for reg, fn in REGS:  # a sale every couple of minutes per register
                if random.random() < 0.5:
                    fd[fn] += 1
                    at = int(clock.wall()) + 3 * 3600 - 5
                    sbis.publish(
                        fn, receipt(fn=fn, fd=fd[fn], reg_id=reg, at=at, items=[("Хлеб", 4500, 1000)])
                    )
            await poll_page(ctx, source, opts)
        sent = len(sbis.requests) - start
    assert len(ctx.stored) == sum(fd.values()), "not every sale was taken"
    figure("sbis_requests_per_hour_4_registers", sent, 4 * 3600 / cfg.interval_s)


def applied_at(db: Path) -> dict[str, float]:
    """key -> when the reference core applied it (its own created_at, Unix seconds)."""
    engine = create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Operation.key, Operation.created_at).where(Operation.key.like("sbis:%"))
            ).all()
    finally:
        engine.dispose()
    return {str(key): created.timestamp() for key, created in rows}


def outbox_times(db: Path) -> dict[str, tuple[float, float]]:
    """key -> (created_at, updated_at) of the gateway's outbox rows (Unix seconds)."""
    engine = create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT key, created_at, updated_at FROM events").all()
    finally:
        engine.dispose()
    return {str(k): (float(c), float(u)) for k, c, u in rows}


async def upload_delay(n: int) -> None:
    sbis = FakeSbis(token_ttl_s=3600.0)
    now_raw = int(time.time()) + 3 * 3600
    for reg, fn in REGS:
        sbis.add_register(reg, fn, now_raw - 3600)
    fetched: dict[str, list[float]] = {fn: [] for _, fn in REGS}
    original = sbis.doc_list

    async def timed(request: Any) -> Any:
        fetched[request.match_info["fn"]].append(time.monotonic())
        return await original(request)

    sbis.doc_list = timed  # type: ignore[method-assign]
    async with sbis.serving():
        toml = (
            f'\n[drivers.sbis]\nenabled = true\nauth_url = "{sbis.url}"\napi_url = "{sbis.url}"\n'
            f'inn = "{sbis.inn}"\napp_client_id = "app-id"\napp_secret = "app-secret"\n'
            'secret_key = "app-key"\n'
            "interval_s = 1.0\n"
        )
        with tempfile.TemporaryDirectory(prefix="sbis-bench-") as tmp:
            async with Stack(Path(tmp), StackOptions(extra_toml=toml, through_proxy=False)) as stack:
                await stack.admin.register("+79160000101")
                await asyncio.sleep(2.0)
                uploads: dict[str, tuple[float, str]] = {}
                walls: dict[str, float] = {}
                for i in range(n):
                    reg, fn = REGS[i % 4]
                    fd = i // 4 + 1
                    at = int(time.time()) + 3 * 3600 - 2
                    sbis.publish(
                        fn,
                        receipt(
                            fn=fn,
                            fd=fd,
                            reg_id=reg,
                            at=at,
                            items=[("Хлеб", 4500, 1000)],
                            phone="+79160000101",
                        ),
                    )
                    uploads[f"sbis:{fn}:{fd}"] = (time.monotonic(), fn)
                    walls[f"sbis:{fn}:{fd}"] = time.time()
                    await asyncio.sleep(random.uniform(0.05, 0.6))
                seen: dict[str, float] = {}
                deadline = time.monotonic() + 60
                while len(seen) < len(uploads) and time.monotonic() < deadline:
                    seen = applied_at(stack.core_db)
                    await asyncio.sleep(0.2)
                if len(seen) < len(uploads):
                    print((Path(tmp) / "gateway.log").read_text()[-3000:], file=sys.stderr)
                stored = outbox_times(stack.gateway_dir / "outbox.db")
    assert len(seen) == len(uploads), f"{len(uploads) - len(seen)} receipts never reached the core"
    total = sorted(seen[k] - walls[k] for k in uploads)
    wait = sorted(min(x for x in fetched[fn] if x >= t) - t for _, (t, fn) in uploads.items())
    q = statistics.quantiles(total, n=100)
    to_outbox = sorted(stored[k][0] - w for k, w in walls.items() if k in stored)
    to_core = sorted(stored[k][1] - stored[k][0] for k in walls if k in stored)
    print(json.dumps({"breakdown_p50_s": {"upload_to_poll": statistics.median(wait),
                                          "upload_to_outbox": statistics.median(to_outbox),
                                          "outbox_to_delivered": statistics.median(to_core)}}))
    figure("sbis_upload_to_accrual_p50_s_interval_1s", statistics.median(total), statistics.median(wait))
    figure("sbis_upload_to_accrual_p99_s_interval_1s", q[98], max(wait))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer receipts")
    args = parser.parse_args()
    random.seed(5)
    await requests_per_hour()
    await upload_delay(24 if args.quick else 80)


if __name__ == "__main__":
    asyncio.run(main())
