"""Several ``posgw core`` processes over one PostgreSQL: a register's events are applied exactly
once and in the register's order, whichever replica gets the stream and whatever dies.

Real processes (tests.simulators.core.replicas), one real PostgreSQL database per test, streams
opened as the gateway opens them (metadata ``posgw-gateway``). Order is read back from the
database: operation ids are taken as events are applied, and a register's events are applied
one after another, so per register the ids must rise with register_seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from simulators.core import fence, jobs
from simulators.core.context import Core
from simulators.core.db import Database
from simulators.core.tables import RegisterLease
from tests.simulators.core.acceptance import load
from tests.simulators.core.replicas import STAFF, Replica, now_ts, replicas, sale_event

pytestmark = pytest.mark.postgres
DEADLINE_S = 30.0
GATEWAY = "gw-fence-test"


def test_gateway_of_takes_only_a_usable_id() -> None:
    assert fence.gateway_of([("posgw-gateway", "gw1"), ("other", "x")]) == "gw1"
    assert fence.gateway_of([("posgw-gateway", "x" * 101)]) == ""
    assert fence.gateway_of(None) == ""
    assert fence.lease_key("gw1", "R1") != fence.lease_key("gw1R", "1")


class Stream:
    """One StreamEvents call to a replica, as the gateway's sender opens it."""

    def __init__(self, replica: Replica, gateway: str = GATEWAY) -> None:
        self.channel = grpc.aio.insecure_channel(replica.address)
        self.call = pb_grpc.LoyaltyCoreServiceStub(self.channel).StreamEvents(  # type: ignore[no-untyped-call]
            metadata=(("posgw-gateway", gateway),), timeout=120)

    async def write(self, events: Sequence[pb.EventEnvelope]) -> None:
        await self.call.write(pb.StreamEventsRequest(events=list(events)))

    async def read(self) -> list[pb.EventAck]:
        reply = await asyncio.wait_for(self.call.read(), DEADLINE_S)
        assert reply is not grpc.aio.EOF  # type: ignore[attr-defined]
        return list(reply.acks)

    async def send(self, events: Sequence[pb.EventEnvelope]) -> list[pb.EventAck]:
        await self.write(events)
        return await self.read()

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close(None)


async def register(replica: Replica, phone: str) -> pb.Customer:
    async with grpc.aio.insecure_channel(replica.address) as channel:
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        req = pb.RegisterCustomerRequest(phone=phone, name="Покупатель", channel="cashier", staff=STAFF,
                                         occurred_at=now_ts())
        answer: pb.RegisterCustomerResponse = await stub.RegisterCustomer(req, timeout=DEADLINE_S)
        return answer.customer


def applied(db_url: str) -> list[tuple[str, str, int]]:
    """(register, key, accrued) of every sale, in the order applied."""
    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT register_id, key, accrued FROM operations WHERE kind = 'sale' ORDER BY id")
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def outcome(ack: pb.EventAck) -> str:
    return ack.rejected.reason if ack.WhichOneof("result") == "rejected" else ack.WhichOneof("result") or ""


async def test_a_register_taken_over_by_a_newer_stream_is_fenced_on_the_old_one(pg_url: str) -> None:
    with replicas(pg_url, 2) as (r1, r2):
        phone = "+79990000101"
        await register(r1, phone)
        events = [sale_event("R1", seq, phone, 10_000 + seq) for seq in range(1, 21)]
        old, new = Stream(r1), Stream(r2)
        try:
            assert [outcome(a) for a in await old.send(events[:5])] == ["commit"] * 5
            took_over = await new.send(events[:10])  # the gateway reconnected: resends from 1
            assert [outcome(a) for a in took_over] == ["commit"] * 10
            assert [a.commit.replayed for a in took_over] == [True] * 5 + [False] * 5
            late = await old.send(events[5:15])  # the old stream is still alive and sends on
            assert [outcome(a) for a in late] == ["STREAM_SUPERSEDED"] + ["PRECEDING_EVENT_RETRY"] * 9
            assert all(a.rejected.retriable for a in late)
            assert [key for _, key, _ in applied(pg_url)] == [e.event_id for e in events[:10]]
            with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
                conn.execute("DELETE FROM register_leases")  # as the jobs do after 30 quiet days
            assert [outcome(a) for a in await new.send(events[10:])] == ["commit"] * 10  # taken back
        finally:
            await old.close()
            await new.close()
        assert [key for _, key, _ in applied(pg_url)] == [e.event_id for e in events]


async def test_a_replica_killed_mid_stream_loses_and_doubles_nothing(pg_url: str) -> None:
    with replicas(pg_url, 3) as (r1, r2, r3):
        phones = ["+79990000201", "+79990000202", "+79990000203"]
        for phone in phones:
            await register(r1, phone)
        script = {reg: [sale_event(reg, seq, phones[seq % 3], 5_000 + 100 * seq) for seq in range(1, 31)]
                  for reg in ("R1", "R2")}
        interleaved = [e for pair in zip(script["R1"], script["R2"], strict=True) for e in pair]
        batches = [interleaved[i:i + 6] for i in range(0, len(interleaved), 6)]
        acked: dict[str, pb.EventAck] = {}
        doomed = Stream(r2)
        try:
            for batch in batches:  # pipelined, as the sender does: acks come back later
                await doomed.write(batch)
            for ack in await doomed.read():
                acked[ack.event_id] = ack
            r2.kill()  # mid-stream: later batches are in flight, maybe half applied
            with pytest.raises((grpc.aio.AioRpcError, AssertionError, asyncio.TimeoutError)):
                while True:
                    for ack in await doomed.read():
                        acked[ack.event_id] = ack
        finally:
            await doomed.close()
        assert acked, "the first batch was acknowledged before the kill"
        # the gateway resends, per register, everything after its acknowledged prefix
        resend = [e for e in interleaved if e.event_id not in acked]
        survivor = Stream(r3)
        try:
            for i in range(0, len(resend), 6):
                for ack in await survivor.send(resend[i:i + 6]):
                    assert outcome(ack) == "commit", ack
                    acked[ack.event_id] = ack
        finally:
            await survivor.close()
        rows = applied(pg_url)
        for reg, events in script.items():
            assert [key for r, key, _ in rows if r == reg] == [e.event_id for e in events]  # once, in order
        accrued = sum(a.commit.calculation.points_to_accrue for a in acked.values())
        assert sum(n for _, _, n in rows) == accrued > 0  # the ledger holds what the tills were told


async def test_two_tills_on_two_replicas_never_spend_one_balance_twice(pg_url: str) -> None:
    with replicas(pg_url, 2) as (r1, r2):
        phone = "+79990000301"
        await register(r1, phone)
        earn = Stream(r1)
        try:
            for seq in range(1, 4):  # earn some points first
                assert outcome((await earn.send([sale_event("R0", seq, phone, 90_000)]))[0]) == "commit"
        finally:
            await earn.close()

        async def call(replica: Replica, method: str,
                       req: object) -> pb.IdentifyCustomerResponse | pb.IssueAppCodeResponse:
            async with grpc.aio.insecure_channel(replica.address) as channel:
                stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
                answer: pb.IdentifyCustomerResponse | pb.IssueAppCodeResponse = await getattr(stub, method)(
                    req, timeout=DEADLINE_S)
                return answer

        who = pb.IdentifyCustomerRequest(customer=pb.CustomerRef(phone=phone), at=now_ts())
        balance = (await call(r1, "IdentifyCustomer", who)).customer.balance  # type: ignore[union-attr]
        assert balance > 0

        async def spend(replica: Replica, register_id: str) -> pb.EventAck:
            code = await call(replica, "IssueAppCode", pb.IssueAppCodeRequest(
                customer=pb.CustomerRef(phone=phone), at=now_ts()))
            event = sale_event(register_id, 1, phone, 10_000_000)
            event.commit.draft.customer.CopyFrom(pb.CustomerRef(app_code=code.code))  # type: ignore[union-attr]
            event.commit.draft.lines[0].accruable = False  # nothing earned: the balance only shrinks
            event.commit.draft.redeem_points = balance
            event.commit.expected.redeemed_points = balance  # what the till showed at calculate
            stream = Stream(replica)
            try:
                return (await stream.send([event]))[0]
            finally:
                await stream.close()

        acks = await asyncio.gather(spend(r1, "RA"), spend(r2, "RB"))
        won = [a for a in acks if outcome(a) == "commit"]
        assert len(won) == 1, [outcome(a) for a in acks]  # the other till is refused, not paid
        paid = won[0].commit.calculation
        assert paid.redeemed_ordinary + paid.redeemed_certificate == balance
        after = (await call(r2, "IdentifyCustomer", who)).customer.balance  # type: ignore[union-attr]
        assert after == 0


async def test_jobs_run_on_two_replicas_at_once_expire_each_lot_once(pg_url: str) -> None:
    with replicas(pg_url, 2) as (r1, r2):
        phones = [f"+7999000050{i}" for i in range(4)]
        for phone in phones:
            await register(r1, phone)  # each gets a welcome lot
        stream = Stream(r1)
        try:
            acks = await stream.send([sale_event("RJ", seq, phones[seq % 4], 30_000) for seq in range(1, 9)])
            assert [outcome(a) for a in acks] == ["commit"] * 8
        finally:
            await stream.close()
        later = Timestamp()
        later.FromDatetime(datetime.now(UTC) + timedelta(days=3 * 365))  # past every lot's expiry

        async def run_jobs(replica: Replica) -> pb.RunJobsResponse:
            async with grpc.aio.insecure_channel(replica.address) as channel:
                stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
                result: pb.RunJobsResponse = await stub.RunJobs(pb.RunJobsRequest(at=later),
                                                                timeout=DEADLINE_S)
                return result

        conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo) as conn:
            open_lots = conn.execute(
                "SELECT count(*), coalesce(sum(remaining), 0) FROM lots WHERE remaining > 0").fetchone()
        assert open_lots is not None and open_lots[0] > 4
        first, second = await asyncio.gather(run_jobs(r1), run_jobs(r2))
        with psycopg.connect(conninfo) as conn:
            expired = conn.execute(
                "SELECT count(*), coalesce(-sum(points), 0) FROM movements WHERE kind = 'expire'").fetchone()
            marks = conn.execute("SELECT count(*) FROM grant_marks").fetchone()
        # each open lot expired by one of the runs, never by both; each grant issued once
        assert (first.lots_expired + second.lots_expired, first.points_expired + second.points_expired) \
            == open_lots == expired
        assert marks is not None and first.certificates_issued + second.certificates_issued == marks[0]


def test_leases_unclaimed_for_long_are_deleted_by_the_jobs(tmp_path: Path) -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    db = Database(f"sqlite:///{tmp_path / 'core.db'}")
    try:
        core = Core(db=db, program=load("seed002"), clock=lambda: now)
        for gateway, age in (("gw-old", 31), ("gw-new", 1)):
            key = fence.lease_key(gateway, "R1")
            db.transaction(lambda s, k=key, a=age: fence.claim(s, k, "s", now - timedelta(days=a)))
        jobs.run_jobs(core, pb.RunJobsRequest())
        left = db.transaction(lambda s: list(s.scalars(select(RegisterLease.lease_key))), write=False)
        assert left == [fence.lease_key("gw-new", "R1")]
    finally:
        db.dispose()
