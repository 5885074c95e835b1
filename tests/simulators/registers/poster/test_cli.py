"""``posgw sim poster``'s day (simulators.registers.poster.cli) against the real gateway and the
reference core: with duplicates and out-of-order delivery every removal is applied at the core
(a removal that overtakes its order waits for it), and nothing is left in the operator queue (read from
the daemon: /v1/queue needs the admin key, which running_system does not set); a card the core does
not know is counted as not applied and fails the run, a card registered first applies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.opqueue import queue_json
from simulators.registers.poster.cli import cafe_day, register_cards, verdict
from simulators.stack_check import AppliedOps, read_applied
from tests.drivers.compliance_harness import running
from tests.simulators.registers.component import System, running_system
from tests.simulators.registers.poster.test_account import OPTIONS, account


async def test_duplicate_and_out_of_order_removals_are_applied_not_queued(tmp_path: Path) -> None:
    async with running_system(tmp_path, {"poster": OPTIONS}) as system:
        started = time.time()
        port = system.daemon.port
        report = await cafe_day(account(port, duplicate=True, out_of_order=True), 10, "")
        assert report["acknowledged"] == 10 and report["delivered"] == report["removals"] == 2
        # a removal's webhook is answered before the driver reads the removal from the account and
        # stores it: wait for both at the core (an empty outbox can come before the second is stored)
        applied = await _applied(system, lambda a: sum(kind == "refund" for kind, _ in a.counts) >= 2)
        assert await _queued_since(system, started - 1) == []  # removals that overtook their order waited
        assert sum(kind == "refund" for kind, _ in applied.counts) == 2, applied.counts
        assert all(n == 1 for n in applied.counts.values())


async def _applied(system: System, done: Callable[[AppliedOps], bool], timeout_s: float = 20.0) -> AppliedOps:
    """The core's applied documents once ``done`` says so (or the last read at the timeout)."""
    deadline = time.monotonic() + timeout_s
    applied = read_applied(system.core_db)
    while not done(applied) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        applied = read_applied(system.core_db)
    return applied


async def _queued_since(system: System, since: float) -> list[dict[str, Any]]:
    """Once the outbox settled, its operator-queue rows created since ``since``, in the form
    ``GET /v1/queue`` answers (read from the daemon: the HTTP listing's auth is not this test's)."""
    outbox = system.daemon.outbox
    assert outbox is not None
    for _ in range(400):
        stats = await outbox.stats()  # pending and waiting from one read: a row woken between two
        if stats.pending == 0 and stats.waiting == 0:  # reads would be counted in neither
            break
        await asyncio.sleep(0.05)
    rows: list[dict[str, Any]] = (await queue_json(outbox))["rejected"]
    return [r for r in rows if r["created_at"] >= since]


async def test_an_unregistered_card_is_counted_not_applied_a_registered_one_applies(tmp_path: Path) -> None:
    async with running_system(tmp_path, {"poster": OPTIONS}) as system:
        started = time.time()
        day = await cafe_day(account(system.daemon.port), 4, "2000099990")  # unknown to this core
        report, status = verdict(day, await _queued_since(system, started - 1), "")
        assert (status, report["acknowledged"], report["not_applied"]) == (1, 4, 2)  # the two card sales
        assert report["not_applied_by_reason"] == {"UNKNOWN_CUSTOMER": 2}

        assert await register_cards(system.core_address, ["2000099991"]) == []
        assert await register_cards(system.core_address, ["2000099991"]) == []  # a rerun changes nothing
        started = time.time()
        day = await cafe_day(account(system.daemon.port), 4, "2000099991")
        report, status = verdict(day, await _queued_since(system, started), "")  # rows of this day only
        assert (status, report["not_applied"]) == (0, 0), report["operator_queue"]
        sales = [k for k in read_applied(system.core_db).counts if k[0] == "sale"]
        assert len(sales) == 6  # the 2 sales without a card of the first day, all 4 of the second


async def test_every_day_takes_new_transaction_ids(tmp_path: Path) -> None:
    # a second day reusing the first day's ids sent a removal the gateway holds for another sale
    async with running("poster", OPTIONS, tmp_path) as gw:
        for _ in range(2):
            assert (await cafe_day(account(gw.daemon.port), 5, ""))["delivered"] == 1
        removals = [k for k, _ in gw.rows() if k.endswith(":removed")]
        assert len(removals) == len(set(removals)) == 2, removals


async def test_a_card_the_core_could_not_register_fails_the_run() -> None:
    problems = await register_cards("127.0.0.1:1", ["2000099992"], timeout_s=0.5)
    assert len(problems) == 1 and "2000099992" in problems[0] and "UNAVAILABLE" in problems[0]
    day = {"orders": 2, "acknowledged": 2, "removals": 0, "delivered": 0}
    report, status = verdict(day, [], "", problems)
    assert status == 1 and report["not_registered"] == problems
    assert verdict(day, [], "")[1] == 0
    unread = verdict(day, [], "HTTP 403 from /v1/queue")
    assert unread == ({**day, "not_applied": 0, "not_applied_by_reason": {}, "operator_queue": [],
                       "operator_queue_unchecked": "HTTP 403 from /v1/queue"}, 1)
    assert verdict({**day, "acknowledged": 1}, [], "")[1] == 1
