"""``posgw sim poster``'s day (simulators.registers.poster.cli) against the real gateway and the
reference core: with duplicates and out-of-order delivery every removal is applied at the core
(a removal that overtakes its order waits for it), and nothing is left in the operator queue."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from simulators.registers.poster.cli import cafe_day
from simulators.registers.queue import operator_queue
from simulators.stack_check import read_applied
from tests.simulators.registers.component import running_system
from tests.simulators.registers.poster.test_account import OPTIONS, account


async def test_duplicate_and_out_of_order_removals_are_applied_not_queued(tmp_path: Path) -> None:
    async with running_system(tmp_path, {"poster": OPTIONS}) as system:
        started = time.time()
        port = system.daemon.port
        report = await cafe_day(account(port, duplicate=True, out_of_order=True), 10, "")
        assert report["acknowledged"] == 10 and report["delivered"] == report["removals"] == 2
        assert system.daemon.outbox is not None
        for _ in range(400):  # removals that overtook their order wait, then go
            stats = await system.daemon.outbox.stats()
            if stats.pending == 0 and not await system.daemon.outbox.waiting():
                break
            await asyncio.sleep(0.05)
        rows, problem = await operator_queue(system.gateway_url, since=started - 1, settle_s=0)
        assert (rows, problem) == ([], "")
        applied = read_applied(system.core_db)
        assert sum(kind == "refund" for kind, _ in applied.counts) == 2, applied.counts
        assert all(n == 1 for n in applied.counts.values())
