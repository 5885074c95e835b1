"""Stream gateways against a real reference core (SQLite): everything acknowledged is applied
once and in each register's order, a core restarted mid-run is resumed from the first
unacknowledged event, and a sale the core refuses for good is counted, never retried forever."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

from simulators.core.server import start_core
from simulators.fleet.streams import (
    StreamGateway,
    Totals,
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
