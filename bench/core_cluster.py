"""Commits/s through 1, 2 and 3 core replicas over one PostgreSQL, against a bare client.

Run through ``.venv/bin/python bench/core_bench.py --cluster [--quick]``. One throw-away
PostgreSQL server (tests/pg.py: fsync off, as in the tests), a fresh database per run:

- ``cluster_commits_per_s_N``: ``GATEWAYS`` simulated gateways, each one register, stream
  ``EVENTS`` sale events in batches of ``BATCH`` (the next batch once the previous is acked, as
  the sender does with one batch in flight) through N ``posgw core`` processes, the gateways'
  channels balanced round_robin over the replicas' addresses (as a gateway lists them);
- ``cluster_commits_per_s_N_unfenced``: the largest N again with streams that do not name their
  gateway, so no register lease is claimed or checked: the difference is what the fence costs;
- baseline ``bare_commits_per_s``: the same number of events, each one transaction from a
  minimal psycopg client at the same concurrency that locks the customer row, inserts the
  operation, the accrual lot and its movement and updates the customer's counters: the rows a
  Commit writes, with none of the core's work (rules, gRPC, ORM).

The machine is shared and has 2 cores: PostgreSQL, the replicas and this client compete for
them, so N > 2 replicas cannot add CPU; the figures say how much the fence, the extra
processes and balancing cost, not how a cluster on separate machines scales.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import grpc.aio
import psycopg

from gateway.core_client import ROUND_ROBIN
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from simulators.fleet.streams import STAFF, now_ts, sale_event
from tests.pg import PgServer, start_server
from tests.simulators.core.replicas import Replica, start_replica

DEADLINE_S = 60.0


@dataclass(frozen=True)
class ClusterSizes:
    gateways: int
    events: int
    batch: int
    replicas: tuple[int, ...]


CLUSTER_FULL = ClusterSizes(gateways=16, events=64, batch=8, replicas=(1, 2, 3))
CLUSTER_QUICK = ClusterSizes(gateways=2, events=4, batch=2, replicas=(1, 2))


def _phone(i: int) -> str:
    return f"+7999100{i:04d}"


async def _register(address: str, customers: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        for i in range(customers):
            await stub.RegisterCustomer(pb.RegisterCustomerRequest(
                phone=_phone(i), name="Bench", channel="cashier", staff=STAFF, occurred_at=now_ts(),
            ), timeout=DEADLINE_S)


async def _gateway(target: str, g: int, sizes: ClusterSizes, fenced: bool) -> int:
    """One gateway's stream: its register's events in batches; returns the events committed.
    ``fenced=False`` leaves out the gateway's name: no register lease (what the fence costs)."""
    options = [("grpc.service_config", ROUND_ROBIN)]
    metadata = (("posgw-gateway", f"bench-gw-{g}"),) if fenced else ()
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = pb_grpc.LoyaltyCoreServiceStub(channel).StreamEvents(  # type: ignore[no-untyped-call]
            metadata=metadata, timeout=DEADLINE_S * 5)
        events = [sale_event(f"G{g}", seq, _phone((g + seq) % sizes.gateways), 10_000 + seq, "B")
                  for seq in range(1, sizes.events + 1)]
        done = 0
        for i in range(0, len(events), sizes.batch):
            await call.write(pb.StreamEventsRequest(events=events[i:i + sizes.batch]))
            reply = await call.read()
            done += sum(1 for a in reply.acks if a.WhichOneof("result") == "commit")
        await call.done_writing()
        return done


async def through_replicas(server: PgServer, n: int, sizes: ClusterSizes, fenced: bool = True) -> float:
    url = server.create_database("bench")
    started: list[Replica] = []
    try:
        for i in range(n):
            started.append(await asyncio.to_thread(start_replica, url, f"b{i + 1}"))
        await _register(started[0].address, sizes.gateways)
        target = started[0].address if n == 1 else "ipv4:" + ",".join(r.address for r in started)
        begin = time.perf_counter()
        done = await asyncio.gather(*(_gateway(target, g, sizes, fenced) for g in range(sizes.gateways)))
        took = time.perf_counter() - begin
        expected = sizes.gateways * sizes.events
        if sum(done) != expected:
            raise RuntimeError(f"{n} replicas committed {sum(done)} of {expected} events")
        return expected / took
    finally:
        for r in started:
            await asyncio.to_thread(r.stop)
        server.drop_database(url)


_BARE = [
    "SELECT id FROM customers WHERE phone = %s FOR UPDATE",
    "INSERT INTO operations (kind, key, content_hash, customer_id, occurred_at, created_at, store_id,"
    " terminal_id, register_id, cashier_id, cashier_name, gross, paid, discount, redeemed, accrued,"
    " cancelled, refunded, state, result) VALUES ('sale', %s, 'h', %s, %s, %s, 'S1', 'T1', %s, 'C1', 'x',"
    " 10000, 10000, 0, 0, 500, false, false, '{}', '') RETURNING id",
    "INSERT INTO lots (customer_id, source, points, remaining, created_at, available_from, expires_at,"
    " certificate, cap_bp, operation_id, expired) VALUES (%s, 'accrual', 500, 500, %s, %s, NULL, false, 0,"
    " %s, false) RETURNING id",
    "INSERT INTO movements (customer_id, operation_id, lot_id, kind, points, at, cashier_id)"
    " VALUES (%s, %s, %s, 'accrual', 500, %s, 'C1')",
    "UPDATE customers SET total_spent = total_spent + 10000, purchase_count = purchase_count + 1,"
    " last_purchase_at = %s WHERE id = %s",
]


async def bare(server: PgServer, sizes: ClusterSizes) -> float:
    """The baseline: the rows of each Commit in one transaction per event, no core in between."""
    url = server.create_database("bare")
    replica = await asyncio.to_thread(start_replica, url, "schema")  # creates the schema
    try:
        await _register(replica.address, sizes.gateways)
    finally:
        await asyncio.to_thread(replica.stop)
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    keys = itertools.count()

    async def client(g: int) -> None:
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            for seq in range(sizes.events):
                at = datetime.now(UTC).replace(tzinfo=None)
                async with conn.transaction():
                    cur = await conn.execute(_BARE[0], (_phone((g + seq) % sizes.gateways),))
                    row = await cur.fetchone()
                    assert row is not None
                    cid = row[0]
                    cur = await conn.execute(_BARE[1], (f"bare-{next(keys)}", cid, at, at, f"G{g}"))
                    op = (await cur.fetchone() or (0,))[0]
                    cur = await conn.execute(_BARE[2], (cid, at, at, op))
                    lot = (await cur.fetchone() or (0,))[0]
                    await conn.execute(_BARE[3], (cid, op, lot, at))
                    await conn.execute(_BARE[4], (at, cid))

    try:
        begin = time.perf_counter()
        await asyncio.gather(*(client(g) for g in range(sizes.gateways)))
        return sizes.gateways * sizes.events / (time.perf_counter() - begin)
    finally:
        server.drop_database(url)


async def cluster_figures(sizes: ClusterSizes) -> list[dict[str, object]]:
    server = await asyncio.to_thread(start_server)
    try:
        baseline = await bare(server, sizes)
        out: list[dict[str, object]] = []
        runs = [(n, True) for n in sizes.replicas] + [(sizes.replicas[-1], False)]
        for n, fenced in runs:
            value = await through_replicas(server, n, sizes, fenced)
            name = f"cluster_commits_per_s_{n}" + ("" if fenced else "_unfenced")
            out.append({"figure": name, "value": round(value, 1),
                        "baseline": round(baseline, 1), "ratio": round(value / baseline, 3),
                        "goal": "reported (2 shared cores)", "met": True})
        return out
    finally:
        await asyncio.to_thread(server.stop)


if __name__ == "__main__":  # pragma: no cover - run through core_bench.py --cluster
    for fig in asyncio.run(cluster_figures(CLUSTER_QUICK)):
        print(json.dumps(fig))
