"""Acceptance: holds (loyalty-rules.md §2.1 "Holds"), on SQLite and PostgreSQL.

Two tills calculate for the same customer with ``hold_ttl_s``: the first reserves the points,
the second sees the balance less the hold and cannot spend the reserved points (neither by a
hold nor by a direct Commit). A Commit naming the hold consumes it, Cancel(hold_id) releases
it, and it lapses by itself after the TTL (observed through the injected clock and RunJobs).
"""

from __future__ import annotations

import grpc

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import Core, expect_error, line, running

FAILED = grpc.StatusCode.FAILED_PRECONDITION
TTL_S = 120
LINES = [line("L1", 400_000), line("L2", 100_000)]  # cap 10 % = 500 points > balance 300


async def customer(core: Core) -> str:
    cust = await core.register()  # seed002: welcome 300
    assert await core.balance(cust.customer_id) == 300
    return cust.customer_id


async def till(core: Core, cid: str, redeem: int, hold: bool = True) -> pb.CalculateResponse:
    draft = core.draft(await core.strong(cid), LINES, redeem=redeem)
    return await core.calculate(draft, hold_ttl_s=TTL_S if hold else 0)


async def test_second_till_cannot_reserve_held_points(db_url: str) -> None:
    async with running("seed002", db_url) as core:
        cid = await customer(core)
        draft_a = core.draft(await core.strong(cid), LINES, redeem=300)
        held = await core.calculate(draft_a, hold_ttl_s=TTL_S)
        assert held.hold_id
        assert held.hold_expires_at.ToSeconds() == int(core.clock.now.timestamp()) + TTL_S
        state = await core.customer(cid)
        assert (state.balance, state.held_points) == (300, 300)

        other = await till(core, cid, 0)
        assert other.max_points == 0
        assert other.limited_by == "balance"
        await expect_error(till(core, cid, 300), FAILED, "INSUFFICIENT_POINTS")
        await expect_error(till(core, cid, 1), FAILED, "INSUFFICIENT_POINTS")
        direct = core.draft(await core.strong(cid), LINES, redeem=300)
        await expect_error(core.commit(direct), FAILED, "INSUFFICIENT_POINTS")
        assert (await core.report()).receipts == 0

        sale = await core.commit(draft_a, hold_id=held.hold_id)
        assert sale.calculation.redeemed_ordinary + sale.calculation.redeemed_certificate == 300
        state = await core.customer(cid)
        assert state.held_points == 0
        assert state.balance == sale.calculation.points_to_accrue == 141


async def test_partial_hold_leaves_the_rest(db_url: str) -> None:
    async with running("seed002", db_url) as core:
        cid = await customer(core)
        first = await till(core, cid, 100)
        assert first.hold_id
        second = await till(core, cid, 0)
        assert second.max_points == 200
        reserved = await till(core, cid, 200)
        assert reserved.hold_id and reserved.hold_id != first.hold_id
        assert (await core.customer(cid)).held_points == 300


async def test_cancel_releases_hold(db_url: str) -> None:
    async with running("seed002", db_url) as core:
        cid = await customer(core)
        held = await till(core, cid, 300)
        await core.cancel(hold_id=held.hold_id)
        state = await core.customer(cid)
        assert (state.balance, state.held_points) == (300, 0)
        again = await till(core, cid, 300)
        assert again.hold_id


async def test_hold_lapses_after_ttl(db_url: str) -> None:
    async with running("seed002", db_url) as core:
        cid = await customer(core)
        await till(core, cid, 300)
        core.clock.advance(seconds=TTL_S - 1)
        assert (await till(core, cid, 0)).max_points == 0
        core.clock.advance(seconds=2)
        jobs = await core.run_jobs()
        assert jobs.holds_released == 1
        assert (await core.customer(cid)).held_points == 0

        await till(core, cid, 300)
        assert (await till(core, cid, 0)).max_points == 0
        core.clock.advance(seconds=TTL_S + 1)
        # lapsed by itself: the next till sees the whole balance without waiting for the job
        assert (await till(core, cid, 0)).max_points == 300
        assert (await till(core, cid, 300)).hold_id


async def test_keyed_hold_release_replays_and_refuses_another_hold(db_url: str) -> None:
    """A release carrying a cancel_key is recorded once: a resend replays, another hold conflicts."""
    async with running("seed002", db_url) as core:
        cid = await customer(core)
        held = await till(core, cid, 300)
        first = await core.cancel(hold_id=held.hold_id, key="till-1:clear:42")
        assert not first.replayed
        again = await core.cancel(hold_id=held.hold_id, key="till-1:clear:42")
        assert again.replayed and again.balance == first.balance == 300
        other = await till(core, cid, 100)
        await expect_error(
            core.cancel(hold_id=other.hold_id, key="till-1:clear:42"),
            grpc.StatusCode.ALREADY_EXISTS, "RECEIPT_CONFLICT",
        )
        assert (await core.customer(cid)).held_points == 100  # the second hold is still live
