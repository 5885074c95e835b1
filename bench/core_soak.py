"""Soak of the core cluster: many gateways' streams against replicas that get killed.

Run: ``.venv/bin/python bench/core_soak.py [--gateways 200] [--tills 4] [--replicas 2]
[--minutes 10] [--kill-every 60]`` (not collected by pytest; exits 1 when a check fails).

One throw-away PostgreSQL (tests/pg.py), N ``posgw core`` replicas on fixed ports, and in this
process ``--gateways`` lightweight gateways: each one channel balanced round_robin over the
replicas, one stream at a time naming its gateway, ``--tills`` registers. A gateway sends one
sale per till per round as one batch, waits for the acks, and keeps every unacknowledged event;
when its stream breaks (a replica died) it opens a new one and resends from the first
unacknowledged event of each register, as the gateway's sender does. Retriable refusals are
resent the same way. Every ``--kill-every`` seconds one replica (in turn) is SIGKILLed and
started again on its port.

At the end every gateway delivers what it still holds, and the database is checked:

- every acknowledged event applied exactly once (one ``operations`` row per key);
- per register, the rows in application order are the register's events in sequence order;
- the ledger's accrued total equals the sum the acks reported;
- nothing refused for good (no event would go to the operator queue).

One JSON line reports the figures (events, commits/s, kills, reconnects, refusals) and checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulators.fleet.streams import (  # noqa: E402
    StreamGateway,
    Totals,
    register_customers,
    run_fleet,
)
from tests.pg import start_server  # noqa: E402
from tests.simulators.core.replicas import Replica, start_replica  # noqa: E402

CUSTOMERS = 100
PAUSE_S = (0.5, 1.5)
PREFIX = "SOAK"


async def chaos(replicas: list[Replica], db_url: str, every_s: float, stop_at: float) -> int:
    kills = 0
    while time.monotonic() + every_s < stop_at:
        await asyncio.sleep(every_s)
        i = kills % len(replicas)
        victim = replicas[i]
        victim.kill()
        kills += 1
        replicas[i] = await asyncio.to_thread(start_replica, db_url, victim.name, listen=victim.address)
    return kills


def check(db_url: str, gateways: list[StreamGateway], totals: Totals) -> dict[str, object]:
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute(
            "SELECT register_id, key, accrued FROM operations WHERE kind = 'sale' ORDER BY id")
        applied = [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
    keys = [k for _, k, _ in applied]
    expected_per_reg: dict[str, list[str]] = {}
    for gw in gateways:
        for reg, last in gw.next_seq.items():
            expected_per_reg[reg] = [f"{reg}-{s}" for s in range(1, last + 1)]
    got_per_reg: dict[str, list[str]] = {}
    for reg, key, _ in applied:
        got_per_reg.setdefault(reg, []).append(key)
    acked = {k for gw in gateways for k in gw.acked_keys}
    return {
        "applied_once": len(keys) == len(set(keys)),
        "every_acked_applied": acked <= set(keys),
        "everything_acked": sum(len(v) for v in expected_per_reg.values()) == len(acked),
        "per_register_order": got_per_reg == {r: v for r, v in expected_per_reg.items() if v},
        "ledger_equals_acks": sum(n for _, _, n in applied) == sum(totals.accrued_by_key.values()),
        "nothing_to_operator_queue": not totals.final_refusals,
    }


async def soak(args: argparse.Namespace) -> int:
    server = await asyncio.to_thread(start_server)
    started: list[Replica] = []
    try:
        url = server.create_database("soak")
        for i in range(args.replicas):
            started.append(await asyncio.to_thread(start_replica, url, f"s{i + 1}"))
        await register_customers(started[0].address, CUSTOMERS)
        begin = time.monotonic()
        seconds = args.minutes * 60
        chaos_task = asyncio.create_task(chaos(started, url, args.kill_every, begin + seconds))
        gateways, totals = await run_fleet([r.address for r in started], gateways=args.gateways,
                                           tills=args.tills, seconds=seconds, customers=CUSTOMERS,
                                           pause_s=PAUSE_S, key_prefix=PREFIX)
        kills = await chaos_task
        took = time.monotonic() - begin
        checks = check(url, gateways, totals)
        report = {
            "gateways": args.gateways, "tills": args.tills, "replicas": args.replicas,
            "minutes": args.minutes,
            "events": totals.acked, "commits_per_s": round(totals.acked / took, 1), "kills": kills,
            "reconnects": totals.reconnects, "retriable_refusals": totals.retriable,
            "operator_queue": len(totals.final_refusals), "checks": checks,
        }
        print(json.dumps(report), flush=True)
        for line in totals.final_refusals[:10]:
            print(line, file=sys.stderr)
        return 0 if all(checks.values()) else 1
    finally:
        for r in started:
            await asyncio.to_thread(r.stop)
        await asyncio.to_thread(server.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=200)
    parser.add_argument("--tills", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between replica kills")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
