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
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.core_client import ROUND_ROBIN  # noqa: E402
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb  # noqa: E402
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc  # noqa: E402
from tests.pg import start_server  # noqa: E402
from tests.simulators.core.replicas import STAFF, Replica, now_ts, sale_event, start_replica  # noqa: E402

CUSTOMERS = 100
ACK_TIMEOUT_S = 20.0
PAUSE_S = (0.5, 1.5)


def _phone(i: int) -> str:
    return f"+7999200{i:04d}"


@dataclass
class Totals:
    sent: int = 0
    acked: int = 0
    reconnects: int = 0
    retriable: int = 0
    final_refusals: list[str] = field(default_factory=list)
    accrued_by_key: dict[str, int] = field(default_factory=dict)


@dataclass
class Gateway:
    index: int
    tills: int
    next_seq: dict[str, int] = field(default_factory=dict)
    pending: list[pb.EventEnvelope] = field(default_factory=list)  # unacknowledged, in order
    acked_keys: list[str] = field(default_factory=list)

    def new_round(self) -> None:
        for t in range(self.tills):
            reg = f"G{self.index}T{t}"
            seq = self.next_seq.get(reg, 0) + 1
            self.next_seq[reg] = seq
            phone = _phone(random.randrange(CUSTOMERS))
            self.pending.append(sale_event(reg, seq, phone, random.randrange(1_000, 500_000), "SOAK"))


async def deliver(gw: Gateway, call: Any, totals: Totals) -> None:
    """Send everything pending on the gateway's stream until it is all acked (raises when the
    stream breaks)."""
    while gw.pending:
        batch = list(gw.pending)
        await call.write(pb.StreamEventsRequest(events=batch))
        totals.sent += len(batch)
        reply = await asyncio.wait_for(call.read(), ACK_TIMEOUT_S)
        if reply is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise ConnectionError("the core ended the stream")
        keep: list[pb.EventEnvelope] = []
        retry_regs: set[str] = set()
        for env, ack in zip(batch, reply.acks, strict=True):
            kind = ack.WhichOneof("result")
            if env.register_id in retry_regs:
                keep.append(env)
            elif kind == "commit":
                totals.acked += 1
                gw.acked_keys.append(env.event_id)
                # a replay (the first answer was lost with a stream) carries the stored answer
                totals.accrued_by_key[env.event_id] = ack.commit.calculation.points_to_accrue
            elif ack.rejected.retriable:
                totals.retriable += 1
                retry_regs.add(env.register_id)
                keep.append(env)
            else:
                totals.final_refusals.append(f"{env.event_id}: {ack.rejected.reason}")
        gw.pending = keep
        if keep:
            await asyncio.sleep(0.2)  # a retriable refusal: resend shortly, from that event


async def run_gateway(gw: Gateway, target: str, stop_at: float, totals: Totals) -> None:
    async with grpc.aio.insecure_channel(target, options=[("grpc.service_config", ROUND_ROBIN)]) as channel:
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        drain_until = stop_at + 120.0
        call: Any = None  # one long-lived stream, reopened when it breaks (as the sender does)
        while time.monotonic() < stop_at or (gw.pending and time.monotonic() < drain_until):
            if time.monotonic() < stop_at:
                gw.new_round()
            if call is None:
                call = stub.StreamEvents(metadata=(("posgw-gateway", f"soak-gw-{gw.index}"),))
            try:
                await deliver(gw, call, totals)
            except (TimeoutError, grpc.aio.AioRpcError, ConnectionError, asyncio.InvalidStateError):
                totals.reconnects += 1
                call.cancel()
                call = None
                await asyncio.sleep(0.3)
                continue
            await asyncio.sleep(random.uniform(*PAUSE_S))
        if call is not None:
            call.cancel()


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


def check(db_url: str, gateways: list[Gateway], totals: Totals) -> dict[str, object]:
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute(
            "SELECT register_id, key, accrued FROM operations WHERE kind = 'sale' ORDER BY id")
        applied = [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
    keys = [k for _, k, _ in applied]
    expected_per_reg: dict[str, list[str]] = {}
    for gw in gateways:
        for reg, last in gw.next_seq.items():
            expected_per_reg[reg] = [f"SOAK-{reg}-{s}" for s in range(1, last + 1)]
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
        async with grpc.aio.insecure_channel(started[0].address) as channel:
            stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
            for c in range(CUSTOMERS):
                req = pb.RegisterCustomerRequest(phone=_phone(c), name="Soak", channel="cashier", staff=STAFF,
                                                 occurred_at=now_ts())
                await stub.RegisterCustomer(req, timeout=30)
        target = "ipv4:" + ",".join(r.address for r in started)
        gateways = [Gateway(g, args.tills) for g in range(args.gateways)]
        totals = Totals()
        begin = time.monotonic()
        stop_at = begin + args.minutes * 60
        chaos_task = asyncio.create_task(chaos(started, url, args.kill_every, stop_at))
        await asyncio.gather(*(run_gateway(gw, target, stop_at, totals) for gw in gateways))
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
