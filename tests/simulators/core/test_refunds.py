"""Acceptance: refunds and cancels (loyalty-rules.md §2.3), worked examples E8 and E9.

E8 (per-line refund with clawback at every referral level) and E9 (clawback beyond the balance,
debt and negative balances) run on SQLite and PostgreSQL; the error paths run on SQLite.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import (
    DEADLINE_S,
    Core,
    clawbacks_by_customer,
    expect_error,
    line,
    load,
    payouts_by_customer,
    phone_ref,
    running,
)

FAILED = grpc.StatusCode.FAILED_PRECONDITION


async def aged(core: Core, referrer: pb.Customer | None = None) -> pb.Customer:
    """A seed002 customer whose welcome bonus expired long ago (balance 0)."""
    cust = await core.register(referrer=referrer, at=core.clock.now - timedelta(days=400))
    assert await core.balance(cust.customer_id) == 0
    return cust


async def test_e8_partial_refund_with_referral_clawback(db_url: str) -> None:
    async with running("seed002", db_url) as core:
        z = await aged(core)
        y = await aged(core, referrer=z)
        x = await aged(core, referrer=y)
        await core.buy(phone_ref(x), 3_000_000, accruable=False)  # tier 2 by spending, earns nothing
        assert (await core.customer(x.customer_id)).tier == "2"
        await core.grant(x.customer_id, 2_000)
        assert await core.balance(x.customer_id) == 2_000
        y0, z0 = await core.balance(y.customer_id), await core.balance(z.customer_id)

        lines = [
            line("L1", 449_700, qty=3),
            line("L2", 235_050),
            line("L3", 17_980, qty=2, discountable=False),
        ]
        calc = await core.calculate(core.draft(await core.strong(x.customer_id), lines))
        assert calc.max_points == 1_027
        sale = await core.commit(core.draft(await core.strong(x.customer_id), lines, redeem=1_000))
        c = sale.calculation
        assert [ln.discount for ln in c.lines] == [65_674, 34_326, 0]
        assert [ln.paid for ln in c.lines] == [384_026, 200_724, 17_980]
        assert sum(ln.paid for ln in c.lines if ln.accrues) == 602_730  # B_a
        assert c.points_to_accrue == 301
        assert payouts_by_customer(sale) == {x.customer_id: 301, y.customer_id: 301, z.customer_id: 60}
        assert sale.balance == 1_301

        r1 = await core.refund(sale.operation_id, lines={"L1": 1})
        assert r1.money_refunded == 128_009
        assert r1.points_restored == 218
        assert clawbacks_by_customer(r1) == {x.customer_id: 63, y.customer_id: 63, z.customer_id: 12}
        assert {(cb.customer_id, cb.kind, cb.level) for cb in r1.clawbacks if cb.points} == {
            (x.customer_id, "accrual", 0),
            (y.customer_id, "referral", 1),
            (z.customer_id, "referral", 2),
        }
        assert r1.balance == 1_456
        assert await core.balance(x.customer_id) == 1_456

        r2 = await core.refund(sale.operation_id, lines={"L1": 2, "L2": 1, "L3": 2})
        assert r2.money_refunded == 474_721
        assert r2.points_restored == 782
        assert clawbacks_by_customer(r2) == {x.customer_id: 238, y.customer_id: 238, z.customer_id: 48}
        assert r2.balance == 2_000
        assert await core.balance(x.customer_id) == 2_000
        assert await core.balance(y.customer_id) == y0
        assert await core.balance(z.customer_id) == z0

        await expect_error(core.refund(sale.operation_id, lines={"L2": 1}), FAILED, "REFUND_EXCEEDS_SALE")
        assert await core.balance(x.customer_id) == 2_000


@pytest.mark.parametrize("negative", [False, True], ids=["debt", "negative-balance"])
async def test_e9_clawback_beyond_balance(db_url: str, negative: bool) -> None:
    program = load("seed002", allow_negative_balance=negative)
    async with running(program, db_url) as core:
        cust = await aged(core)
        cid = cust.customer_id
        s1 = await core.buy(phone_ref(cust), 1_000_000)
        assert s1.calculation.points_to_accrue == 300
        s2 = await core.buy(await core.strong(cid), 250_000, redeem=250)
        assert s2.calculation.points_to_accrue == 67
        assert s2.balance == 117

        refund = await core.refund(s1.operation_id, full=True)
        assert refund.money_refunded == 1_000_000
        if negative:
            assert refund.balance == -183 and refund.debt == 0
            assert (await core.customer(cid)).balance == -183
            # redemption is blocked until the balance is positive again
            blocked = await core.calculate(core.draft(await core.strong(cid), [line("L1", 250_000)]))
            assert blocked.max_points == 0
            await expect_error(
                core.calculate(core.draft(await core.strong(cid), [line("L1", 250_000)], redeem=1)),
                FAILED,
                "INSUFFICIENT_POINTS",
            )
        else:
            assert refund.balance == 0 and refund.debt == 183
            assert sum(cb.shortfall for cb in refund.clawbacks) == 183
            state = await core.customer(cid)
            assert (state.balance, state.debt) == (0, 183)

        nxt = await core.buy(phone_ref(cust), 333_400)
        assert nxt.calculation.points_to_accrue == 100
        state = await core.customer(cid)
        if negative:
            assert nxt.balance == -83 and state.balance == -83
        else:
            assert (nxt.balance, nxt.debt) == (0, 83)
            assert (state.balance, state.debt) == (0, 83)


@pytest.fixture
async def core(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running("seed002", f"sqlite:///{tmp_path / 'core.db'}") as c:
        yield c


async def test_refund_by_sale_key_and_replay(core: Core) -> None:
    cust = await core.register()
    sale = await core.commit(core.draft(phone_ref(cust), [line("L1", 100_000), line("L2", 50_000)]), "SALE-1")
    assert sale.balance == 300 + 45
    req = pb.RefundRequest(
        refund_key="RF-1",
        sale=pb.SaleRef(sale_key="SALE-1"),
        lines=[pb.RefundLine(line_id="L2", qty_milli=1000)],
    )
    first = await core.stub.Refund(req, timeout=DEADLINE_S)
    assert first.operation_id == sale.operation_id
    assert first.money_refunded == 50_000
    assert clawbacks_by_customer(first) == {cust.customer_id: 15}
    again = await core.stub.Refund(req, timeout=DEADLINE_S)
    assert again.replayed and again.refund_id == first.refund_id
    assert again.money_refunded == 50_000
    assert await core.balance(cust.customer_id) == 300 + 45 - 15


async def test_refund_errors(core: Core) -> None:
    cust = await core.register()
    sale = await core.buy(phone_ref(cust), 100_000)
    balance = await core.balance(cust.customer_id)
    await expect_error(core.refund("999999", full=True), grpc.StatusCode.NOT_FOUND, "OPERATION_NOT_FOUND")
    await expect_error(core.refund(sale.operation_id, lines={"L1": 2}), FAILED, "REFUND_EXCEEDS_SALE")
    await expect_error(core.refund(sale.operation_id, lines={"NOPE": 1}), grpc.StatusCode.INVALID_ARGUMENT)
    assert await core.balance(cust.customer_id) == balance
    await core.refund(sale.operation_id, full=True)
    await expect_error(core.refund(sale.operation_id, full=True), FAILED, "REFUND_EXCEEDS_SALE")
    assert await core.balance(cust.customer_id) == 300


async def test_cancel_rules(core: Core) -> None:
    cust = await core.register()
    refunded = await core.buy(phone_ref(cust), 100_000)
    await core.refund(refunded.operation_id, lines={"L1": 1})
    await expect_error(core.cancel(refunded.operation_id), FAILED, "CANCEL_NOT_ALLOWED")

    late = await core.buy(phone_ref(cust), 100_000)
    balance = await core.balance(cust.customer_id)
    core.clock.advance(hours=25)
    await expect_error(core.cancel(late.operation_id), FAILED, "CANCEL_NOT_ALLOWED")
    assert await core.balance(cust.customer_id) == balance

    fresh = await core.buy(phone_ref(cust), 100_000)
    done = await core.cancel(fresh.operation_id, key="CX-1")
    assert done.points_removed == 30
    assert done.balance == balance
    replay = await core.cancel(fresh.operation_id, key="CX-1")
    assert replay.replayed and replay.balance == balance
    await expect_error(core.refund(fresh.operation_id, full=True), FAILED, "OPERATION_CANCELLED")
