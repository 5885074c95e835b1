"""``posgw sim sbis``: serve a fake SBIS cloud with a scripted shop week for a gateway polling it.

Start the gateway with ``[drivers.sbis]`` pointing ``auth_url`` and ``api_url`` at this cloud
(``--port``; the section to use is printed first), then the week is shown step by step. Exit
status 0 when the gateway took every sale and return (its ``committed`` counter for sbis grew by
their number, its outbox drained) and nothing went to the operator queue; 1 otherwise.
``--customers`` must be phones the core knows: a receipt naming an unknown phone is refused by the
core (UNKNOWN_CUSTOMER) and counted in the report's operator queue.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import aiohttp

from simulators.registers.queue import operator_queue, queue_lines
from simulators.registers.sbis.cloud import FakeSbis
from simulators.registers.sbis.week import shop_week

PHONES = ["+79160000101", "+79160000102", "+79160000103"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--port", type=int, default=8765, help="port of the fake cloud on 127.0.0.1 (default 8765)"
    )
    parser.add_argument("--registers", type=int, default=4, help="registers in the shop (default 4)")
    parser.add_argument("--days", type=int, default=7, help="days in the week (default 7)")
    parser.add_argument("--per-day", type=int, default=4, help="sales per register and day (default 4)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--customers", default=",".join(PHONES), help="comma-separated phones")
    parser.add_argument("--step-s", type=float, default=0.5, help="seconds between script steps")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the gateway")
    parser.add_argument("--skew-h", type=int, default=0, help="zone skew of dateFrom vs dateTime, hours")
    for flag in ("expire-tokens", "rate-limit", "html-errors"):
        parser.add_argument(f"--{flag}", action="store_true", help=f"misbehave: {flag.replace('-', ' ')}")


async def committed(session: aiohttp.ClientSession, gateway: str) -> tuple[float, int]:
    """(sbis committed counter, outbox pending) read from the gateway's /metrics and /healthz."""
    async with session.get(f"{gateway}/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("posgw_driver_events_total{")
            and 'driver="sbis"' in line
            and 'what="committed"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    async with session.get(f"{gateway}/healthz") as resp:
        health: dict[str, Any] = await resp.json(content_type=None)
    return total, int(health.get("pending", 0))


async def _main(args: argparse.Namespace) -> int:
    gateway = args.gateway.rstrip("/")
    now_raw = int(time.time()) + 3 * 3600  # the documents carry Moscow wall-clock time
    week = shop_week(
        seed=args.seed,
        registers=args.registers,
        days=args.days,
        per_day=args.per_day,
        end_raw=now_raw - 600,
        phones=[p.strip() for p in args.customers.split(",") if p.strip()],
    )
    cloud = FakeSbis(skew_s=args.skew_h * 3600)
    for reg, fn in week.registers:
        cloud.add_register(reg, fn, week.effective_from)
    started = time.time()
    timeout = aiohttp.ClientTimeout(total=10)
    async with cloud.serving(args.port) as sbis, aiohttp.ClientSession(timeout=timeout) as session:
        print(
            f'[drivers.sbis]\nenabled = true\nauth_url = "{sbis.url}"\napi_url = "{sbis.url}"\n'
            f'inn = "{sbis.inn}"\n'
            f'app_client_id = "{sbis.app[0]}"\napp_secret = "{sbis.app[1]}"\nsecret_key = "{sbis.app[2]}"\n'
            "backfill_s = 691200.0",
            flush=True,
        )
        try:
            base, _ = await committed(session, gateway)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            print(json.dumps({"error": f"gateway not reachable: {exc!r}"}))
            return 1
        for n, step in enumerate(week.steps):
            if step.kind == "replace":
                sbis.replace_drive(step.reg_id, step.fn, step.at)
            else:
                sbis.publish(step.fn, *step.docs)
            if args.expire_tokens and n % 7 == 3:
                sbis.expire_tokens()
            if args.rate_limit and n % 5 == 2:
                sbis.faults.append("429:1")
            if args.html_errors and n % 6 == 4:
                sbis.faults.append("html")
            await asyncio.sleep(args.step_s)
        want = len(week.expected)
        deadline = time.monotonic() + args.timeout
        got, pending = 0.0, -1
        while time.monotonic() < deadline:
            try:
                total, pending = await committed(session, gateway)
                got = total - base
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            if got >= want and pending == 0:
                break
            await asyncio.sleep(1.0)
        rows, problem = await operator_queue(
            gateway, since=started - 1.0, admin_key=os.environ.get("POSGW_ADMIN_KEY", "")
        )
    report: dict[str, Any] = {
        "sales": len(week.sales()),
        "returns": len(week.refunds()),
        "committed": got,
        "pending": pending,
        "cloud_requests": len(sbis.requests),
        "operator_queue": len(rows),
    }
    if problem:
        report["operator_queue_unchecked"] = problem
    print(json.dumps(report, ensure_ascii=False))
    for line in queue_lines(rows):
        print(line)
    return 0 if got >= want and pending == 0 and not rows and not problem else 1


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))
