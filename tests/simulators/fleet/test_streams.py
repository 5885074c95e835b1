"""Stream gateways against a real reference core (SQLite): everything acknowledged is applied
once and in each register's order, a core restarted mid-run is resumed from the first
unacknowledged event, and a sale the core refuses for good is counted, never retried forever."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from simulators.core.server import start_core
from simulators.fleet.streams import (
    MAX_CUSTOMERS,
    StreamGateway,
    Totals,
    customer_phone,
    register_customers,
    run_fleet,
    sale_event,
    target_of,
)

ROOT = Path(__file__).resolve().parents[3]
PROGRAM = ROOT / "config" / "programs" / "seed002.toml"


def applied(db: Path) -> list[tuple[str, str, int]]:
    """(register, key, accrued) of every sale the core applied, in the order applied."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT register_id, key, accrued FROM operations WHERE kind = 'sale' ORDER BY id")
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def check_ground_truth(db: Path, fleet: list[StreamGateway], totals: Totals) -> None:
    rows = applied(db)
    keys = [k for _, k, _ in rows]
    assert len(keys) == len(set(keys)), "an event applied twice"
    acked = [k for gw in fleet for k in gw.acked_keys]
    assert sorted(acked) == sorted(keys), "acknowledged and applied differ"
    expected = {reg: [f"{reg}-{s}" for s in range(1, last + 1)]
                for gw in fleet for reg, last in gw.next_seq.items()}
    got: dict[str, list[str]] = {}
    for reg, key, _ in rows:
        got.setdefault(reg, []).append(key)
    assert got == expected, "a register's events applied out of order or missing"
    assert sum(n for _, _, n in rows) == sum(totals.accrued_by_key.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_fleet_delivers_everything_once_in_order(tmp_path: Path) -> None:
    db = tmp_path / "core.db"
    handle = await start_core(PROGRAM, f"sqlite:///{db}")
    try:
        await register_customers(handle.address, 5)
        fleet, totals = await run_fleet([handle.address], gateways=3, tills=2, seconds=1.0, customers=5,
                                        pause_s=(0.05, 0.1), drain_s=30, key_prefix="T1", seed=7)
    finally:
        await handle.stop(grace=1.0)
    assert totals.acked >= 6 and not totals.final_refusals
    assert all(not gw.pending for gw in fleet)
    registers = {reg for gw in fleet for reg in gw.next_seq}
    assert registers == {f"T1-G{g}T{t}" for g in range(3) for t in range(2)}
    check_ground_truth(db, fleet, totals)


async def test_a_core_restarted_mid_run_is_resumed_without_doubling(tmp_path: Path) -> None:
    db = tmp_path / "core.db"
    address = f"127.0.0.1:{free_port()}"
    handle = await start_core(PROGRAM, f"sqlite:///{db}", address)
    await register_customers(address, 5)
    run = asyncio.create_task(run_fleet([address], gateways=2, tills=2, seconds=2.5, customers=5,
                                        pause_s=(0.05, 0.1), drain_s=30, key_prefix="T2", seed=3))
    try:
        await asyncio.sleep(0.8)
        await handle.stop(grace=0)  # every stream breaks; unacknowledged events stay with their gateway
        handle = await start_core(PROGRAM, f"sqlite:///{db}", address)
        fleet, totals = await run
    finally:
        await handle.stop(grace=1.0)
    assert totals.reconnects >= 1 and not totals.final_refusals
    assert all(not gw.pending for gw in fleet)
    check_ground_truth(db, fleet, totals)


async def test_a_sale_refused_for_good_is_counted_and_not_retried(tmp_path: Path) -> None:
    db = tmp_path / "core.db"
    handle = await start_core(PROGRAM, f"sqlite:///{db}")
    try:  # nobody registered: every sale names an unknown customer
        fleet, totals = await run_fleet([handle.address], gateways=1, tills=1, seconds=0.3, customers=2,
                                        pause_s=(0.05, 0.1), drain_s=10, key_prefix="T3", seed=1)
    finally:
        await handle.stop(grace=1.0)
    assert totals.acked == 0 and totals.final_refusals
    assert all("UNKNOWN_CUSTOMER" in line for line in totals.final_refusals)
    assert len(totals.final_refusals) == fleet[0].next_seq["T3-G0T0"] and not fleet[0].pending
    assert applied(db) == []


def test_sale_event_keys_and_targets() -> None:
    assert sale_event("R", 3, "+79990000000", 100, "").event_id == "R-3"
    assert sale_event("R", 3, "+79990000000", 100).event_id == "EV-R-3"
    assert target_of(["a:1"]) == "a:1"
    assert target_of(["127.0.0.1:1", "127.0.0.1:2"]) == "ipv4:127.0.0.1:1,127.0.0.1:2"


class RefusesFirstStream(pb_grpc.LoyaltyCoreServiceServicer):
    """An ack-only core that refuses every event of its first stream retriably and, like the
    reference core, keeps refusing that stream's later messages; later streams are applied."""

    def __init__(self) -> None:
        self.streams = 0
        self.applied: list[str] = []

    async def StreamEvents(self, request_iterator: Any,
                           context: Any) -> AsyncIterator[pb.StreamEventsResponse]:
        self.streams += 1
        refusing = self.streams == 1
        async for batch in request_iterator:
            acks = []
            for env in batch.events:
                if refusing:
                    acks.append(pb.EventAck(event_id=env.event_id, rejected=pb.Rejection(
                        reason="STORAGE_BUSY", retriable=True)))
                else:
                    self.applied.append(env.event_id)
                    acks.append(pb.EventAck(event_id=env.event_id, commit=pb.CommitResponse()))
            yield pb.StreamEventsResponse(acks=acks)


async def test_a_retriable_refusal_is_resent_on_a_new_stream_and_the_run_ends() -> None:
    core = RefusesFirstStream()
    server = grpc.aio.server()
    pb_grpc.add_LoyaltyCoreServiceServicer_to_server(core, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        fleet, totals = await asyncio.wait_for(
            run_fleet([f"127.0.0.1:{port}"], gateways=1, tills=2, seconds=0.3, customers=2,
                      pause_s=(0.05, 0.1), drain_s=10, key_prefix="T4", seed=2), 30)
    finally:
        await server.stop(0)
    assert core.streams >= 2 and totals.retriable >= 2 and not totals.final_refusals
    assert not fleet[0].pending and sorted(core.applied) == sorted(fleet[0].acked_keys)
    assert len(core.applied) == len(set(core.applied)) == sum(fleet[0].next_seq.values())


def test_customer_phones_are_valid_mobiles_over_the_whole_range() -> None:
    from gateway.rules.identity import normalize_phone

    for i in (0, 9_999, 10_000, MAX_CUSTOMERS - 1):
        assert normalize_phone(customer_phone(i)) == customer_phone(i)
    assert len({customer_phone(i) for i in range(0, 20_000, 7)}) == len(range(0, 20_000, 7))
    with pytest.raises(ValueError):
        customer_phone(MAX_CUSTOMERS)
