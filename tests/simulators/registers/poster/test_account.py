"""The Poster account simulator against the real gateway daemon (stub core) over real sockets."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import aiohttp

from simulators.registers.poster.account import RETRIES, PosterAccount, Switches
from simulators.registers.poster.cli import cafe_day
from tests.drivers.compliance_harness import running

SECRET, TOKEN = "app-secret", "pair-tok"
OPTIONS = {"pairing_tokens": [TOKEN], "application_secret": SECRET}


async def no_wait(_: float) -> None:
    return None


def account(port: int, **switches: bool) -> PosterAccount:
    return PosterAccount(
        f"http://127.0.0.1:{port}", secret=SECRET, token=TOKEN, switches=Switches(**switches), sleep=no_wait
    )


async def test_cafe_day_with_removals_and_redeliveries_applied_once(tmp_path: Path) -> None:
    async with running("poster", OPTIONS, tmp_path) as gw:
        report = await cafe_day(account(gw.daemon.port, duplicate=True), 10, "2000012345")
        assert report == {"orders": 10, "acknowledged": 10, "removals": 2, "delivered": 2}
        keys = [k for k, _ in gw.rows()]
        assert len(keys) == len(set(keys)) == 12  # 10 sales + 2 removals, each once despite duplicates
        assert sum(":removed" in k for k in keys) == 2


async def test_bad_signature_and_stale_time_are_retried_then_given_up_nothing_stored(tmp_path: Path) -> None:
    async with running("poster", OPTIONS, tmp_path) as gw, aiohttp.ClientSession() as session:
        for switch in ("bad_signature", "stale_time"):
            delivery = await account(gw.daemon.port, **{switch: True}).send_webhook(session, 58031, "removed")
            assert delivery.statuses == [403] * (RETRIES + 1) and not delivery.delivered
        assert gw.rows() == []


async def test_out_of_order_removal_then_close_and_a_partial_return(tmp_path: Path) -> None:
    # the core is away: nothing is delivered, so the early removal is still the gateway's to relink
    async with running("poster", OPTIONS, tmp_path, online=False) as gw, aiohttp.ClientSession() as session:
        acc = account(gw.daemon.port, out_of_order=True)
        done = await acc.order(
            session,
            [(12, Decimal("190"), Decimal(2)), (40, Decimal("85.5"), Decimal(1))],
            card="2000012345",
            transaction_id=58031,
            removed_early=True,
        )
        assert done.bonus == 0 and done.total == Decimal("465.5") and all(s == 200 for s in done.statuses)
        assert await acc.return_products(session, done, [(12, Decimal(1))]) == 200
        keys = [k for k, _ in gw.rows()]
        assert (
            len(keys) == 3
            and [sum(m in k for k in keys) for m in (":order:", ":return:", ":removed")] == [1] * 3
        )
