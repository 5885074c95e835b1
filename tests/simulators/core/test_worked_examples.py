"""Acceptance: the worked examples E1–E12 of loyalty-rules.md §5, through the gRPC API.

Every bolded figure of an example is asserted. State is built only through the API: real
registrations (referral chains via ``referrer_code``), real purchases, manual grants, the
draft's ``occurred_at`` with the core's injected clock, and ``RunJobs`` for expiry and
birthday certificates. seed002's welcome bonus (300 points, expiring after 365 days) is
aged out by registering 400 days before the example where an example starts at balance 0.

E8 (partial refund) and E9 (clawback beyond balance) live in ``test_refunds.py`` and E12 also
in ``test_idempotency.py``, where they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from pathlib import Path

import grpc
import pytest

from tests.simulators.core.acceptance import (
    Clock,
    Core,
    expect_error,
    line,
    msk,
    payouts_by_customer,
    phone_ref,
    running,
)

FAILED = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'core.db'}"


@pytest.fixture
async def core002(sqlite_url: str) -> AsyncIterator[Core]:
    async with running("seed002", sqlite_url) as core:
        yield core


@pytest.fixture
async def core000(sqlite_url: str) -> AsyncIterator[Core]:
    async with running("seed000", sqlite_url) as core:
        yield core


async def aged_customer(core: Core, **kw: object) -> str:
    """A seed002 customer registered 400 days ago: the welcome bonus has expired."""
    joined = await core.join(at=core.clock.now - timedelta(days=400), **kw)  # type: ignore[arg-type]
    assert joined.welcome_points == 300
    assert await core.balance(joined.customer.customer_id) == 0
    return joined.customer.customer_id


async def test_e1_tier_rate_and_excluded_line(core002: Core) -> None:
    core = core002
    cid = await aged_customer(core)
    draft = core.draft(
        await core.strong(cid),
        [
            line("L1", 899_000),
            line("L2", 339_999, qty=3),
            line("L3", 50_000, discountable=False, accruable=False),
        ],
    )
    calc = await core.calculate(draft)
    assert calc.tier == "1"
    assert calc.gross == 1_288_999
    assert calc.payable == 1_288_999
    assert calc.points_to_accrue == 371
    assert calc.max_points == 0
    assert calc.limited_by == "balance"
    assert [ln.accrues for ln in calc.lines] == [True, True, False]
    result = await core.commit(draft)
    assert result.calculation.points_to_accrue == 371
    assert result.balance == 371


async def test_e2_cap_and_largest_remainder(core000: Core) -> None:
    core = core000
    joined = await core.join()
    cust = joined.customer
    assert joined.welcome_points == 100
    await core.grant(cust.customer_id, 900)
    assert (await core.customer(cust.customer_id)).balance == 1_000
    lines = [line("L1", 33_333), line("L2", 33_333), line("L3", 33_334)]

    calc = await core.calculate(core.draft(await core.strong(cust.customer_id), lines))
    assert calc.max_points == 50
    assert calc.limited_by == "tier_cap"

    meta = await expect_error(
        core.calculate(core.draft(await core.strong(cust.customer_id), lines, redeem=60)),
        FAILED,
        "REDEMPTION_CAP_EXCEEDED",
    )
    assert meta.get("max_points") == "50"

    draft = core.draft(await core.strong(cust.customer_id), lines, redeem=50)
    calc = await core.calculate(draft)
    assert [ln.discount for ln in calc.lines] == [1_667, 1_666, 1_667]
    assert calc.payable == 95_000
    assert calc.points_to_accrue == 19
    result = await core.commit(draft)
    assert [ln.discount for ln in result.calculation.lines] == [1_667, 1_666, 1_667]
    assert result.calculation.points_to_accrue == 19
    assert result.balance == 969
    assert await core.balance(cust.customer_id) == 969


async def test_e3_line_floor(core002: Core) -> None:
    core = core002
    cid = await aged_customer(core)
    cust = await core.customer(cid)
    # tier 5 through real spending: 500 000 ₽ on a non-accruing line (earns nothing)
    await core.buy(phone_ref(cust), 50_000_000, accruable=False)
    assert (await core.customer(cid)).tier == "5"
    await core.grant(cid, 5_000)
    assert await core.balance(cid) == 5_000
    lines = [
        line("L1", 100_000, min_unit_price=90_000),
        line("L2", 50_001, qty=3),
        line("L3", 19_999, discountable=False),
    ]
    calc = await core.calculate(core.draft(await core.strong(cid), lines))
    assert calc.max_points == 450
    draft = core.draft(await core.strong(cid), lines, redeem=450)
    calc = await core.calculate(draft)
    assert [ln.discount for ln in calc.lines] == [7_500, 37_500, 0]
    assert calc.payable == 125_000
    assert calc.points_to_accrue == 125
    result = await core.commit(draft)
    assert [ln.discount for ln in result.calculation.lines] == [7_500, 37_500, 0]
    assert result.calculation.points_to_accrue == 125
    assert result.balance == 5_000 - 450 + 125


async def test_e4_promotion(core002: Core) -> None:
    core = core002
    cust = await core.register()
    ref = phone_ref(cust)  # accrual only: a typed phone is enough
    await core.buy(ref, 2_950_000)
    assert (await core.customer(cust.customer_id)).tier == "1"
    first = await core.buy(ref, 100_000)
    assert first.calculation.tier == "1"
    assert first.calculation.points_to_accrue == 30
    assert first.tier == "2"
    second = await core.buy(ref, 100_000)
    assert second.calculation.tier == "2"
    assert second.calculation.points_to_accrue == 50


async def test_e5_referral_chain(core002: Core) -> None:
    core = core002
    w = await core.register()
    a = await core.register(referrer=w)
    b = await core.register(referrer=a)
    c = await core.register(referrer=b)
    d = await core.register(referrer=c)
    before = {x.customer_id: await core.balance(x.customer_id) for x in (w, a, b, c, d)}
    result = await core.buy(phone_ref(d), 1_225_000)
    paid = payouts_by_customer(result)
    expected = {d.customer_id: 367, c.customer_id: 612, b.customer_id: 122, a.customer_id: 122}
    assert {k: v for k, v in paid.items() if v} == expected
    levels = {(p.customer_id, p.kind, p.level) for p in result.payouts if p.points}
    assert levels == {
        (d.customer_id, "accrual", 0),
        (c.customer_id, "referral", 1),
        (b.customer_id, "referral", 2),
        (a.customer_id, "referral", 3),
    }
    for x in (w, a, b, c, d):
        gained = await core.balance(x.customer_id) - before[x.customer_id]
        assert gained == expected.get(x.customer_id, 0), x.customer_id


async def test_e6_welcome_and_invite_bonus(core000: Core) -> None:
    core = core000
    d = await core.register()
    e = await core.register(referrer=d)
    f_joined = await core.join(referrer=e)
    f = f_joined.customer
    assert f_joined.created and f_joined.welcome_points == 100 and f.balance == 100
    e_before, d_before = await core.balance(e.customer_id), await core.balance(d.customer_id)

    first = await core.buy(await core.strong(f.customer_id), 50_000, redeem=25)
    assert first.calculation.payable == 47_500
    assert first.calculation.points_to_accrue == 9
    assert first.balance == 84
    paid = payouts_by_customer(first)
    assert paid[e.customer_id] == 214
    assert paid[d.customer_id] == 4
    kinds = {(p.kind, p.points) for p in first.payouts if p.customer_id == e.customer_id}
    assert kinds == {("referral", 14), ("invite_bonus", 200)}
    assert await core.balance(e.customer_id) == e_before + 214
    assert await core.balance(d.customer_id) == d_before + 4

    second = await core.buy(await core.strong(f.customer_id), 50_000, redeem=25)
    assert payouts_by_customer(second)[e.customer_id] == 14
    assert await core.balance(e.customer_id) == e_before + 214 + 14


async def test_e7_floors(sqlite_url: str) -> None:
    async with running("seed003", sqlite_url) as core:
        inviter = await core.register()
        friend = await core.register(referrer=inviter)
        start = {x: await core.balance(x) for x in (inviter.customer_id, friend.customer_id)}
        first = await core.buy(phone_ref(friend), 4_000)
        assert first.calculation.points_to_accrue == 0
        assert payouts_by_customer(first).get(inviter.customer_id, 0) == 3
        nxt = await core.buy(phone_ref(friend), 25_000)
        assert nxt.calculation.points_to_accrue == 5
        assert payouts_by_customer(nxt).get(inviter.customer_id, 0) == 2
        assert await core.balance(friend.customer_id) == start[friend.customer_id] + 5
        assert await core.balance(inviter.customer_id) == start[inviter.customer_id] + 5


async def test_e10_expiry(sqlite_url: str) -> None:
    clock = Clock(msk(2024, 3, 1, 12))
    async with running("seed002", sqlite_url, clock) as core:
        cust = await core.register()  # welcome 300 expires 2025-03-01 00:00, before the example
        cid = cust.customer_id
        clock.set(msk(2024, 3, 10, 12))
        assert (await core.buy(phone_ref(cust), 666_667)).calculation.points_to_accrue == 200  # lot A
        clock.set(msk(2024, 11, 2, 12))
        assert (await core.buy(phone_ref(cust), 500_000)).calculation.points_to_accrue == 150  # lot B

        clock.set(msk(2025, 3, 9, 15))
        assert await core.balance(cid) == 350
        sale = await core.buy(await core.strong(cid), 150_000, redeem=120)
        assert sale.calculation.redeemed_ordinary == 120
        assert sale.calculation.points_to_accrue == 41
        assert sale.balance == 271

        clock.set(msk(2025, 3, 10, 0))
        jobs = await core.run_jobs()
        # A's remaining 80, plus the welcome lot that expired on 2025-03-01 (no job ran since)
        assert (jobs.lots_expired, jobs.points_expired) == (2, 380)
        assert await core.balance(cid) == 191  # so the 120 were taken from A, not B
        clock.set(msk(2025, 3, 10, 10))
        calc = await core.calculate(core.draft(await core.strong(cid), [line("L1", 200_000)]))
        assert calc.max_points == 191
        assert calc.limited_by == "balance"

        # B (150) expires 2025-11-02 00:00; the 41 earned on 2025-03-09 expire 2026-03-09 00:00
        await core.run_jobs(msk(2025, 11, 2, 0))
        clock.set(msk(2026, 3, 8, 23, 59))
        assert (await core.customer(cid)).ordinary_points == 41
        clock.set(msk(2026, 3, 9, 0))
        await core.run_jobs()
        assert (await core.customer(cid)).ordinary_points == 0


async def test_e11_birthday_certificate(sqlite_url: str) -> None:
    clock = Clock(msk(2025, 4, 1, 12))
    async with running("seed002", sqlite_url, clock) as core:
        cust = await core.register(birth_date="1990-05-14")  # welcome 300
        cid = cust.customer_id
        clock.set(msk(2025, 5, 13, 12))  # a recent purchase: no win-back grant interferes
        assert (await core.buy(phone_ref(cust), 333_400)).calculation.points_to_accrue == 100
        assert (await core.customer(cid)).ordinary_points == 400

        clock.set(msk(2025, 5, 14, 9))
        jobs = await core.run_jobs()
        assert jobs.certificates_issued == 1
        state = await core.customer(cid)
        assert [(c.kind, c.points, c.cap_bp) for c in state.certificates] == [("birthday", 1_000, 2_000)]
        assert state.certificates[0].expires_at.ToDatetime(tzinfo=UTC) == msk(2025, 5, 29, 0)
        assert (await core.run_jobs()).certificates_issued == 0  # once a year

        clock.set(msk(2025, 5, 20, 12))
        lines = [line("L1", 300_000), line("L2", 150_000)]
        calc = await core.calculate(core.draft(await core.strong(cid), lines))
        assert calc.max_points == 900
        await expect_error(
            core.calculate(core.draft(await core.strong(cid), lines, redeem=1_000)),
            FAILED,
            "REDEMPTION_CAP_EXCEEDED",
        )
        sale = await core.commit(core.draft(await core.strong(cid), lines, redeem=900))
        assert sale.calculation.redeemed_certificate == 900
        assert sale.calculation.redeemed_ordinary == 0
        assert [ln.discount for ln in sale.calculation.lines] == [60_000, 30_000]
        assert sale.calculation.payable == 360_000
        assert sale.calculation.points_to_accrue == 108

        clock.set(msk(2025, 5, 29, 0))
        await core.run_jobs()
        state = await core.customer(cid)
        assert state.certificate_points == 0
        assert state.balance == 508
