"""Acceptance: Commit's checks against the till's ``expected`` figures (loyalty-rules.md §2.2).

- Online commit with redemption: an ``expected`` that differs from the recalculation is
  CALC_MISMATCH and nothing is stored; a matching one goes through.
- Offline commit (the gateway answered the till itself): the core keeps the printed
  redemption and line discounts while balance and cap allow them, always uses its own accrual,
  and refuses with INSUFFICIENT_POINTS / REDEMPTION_CAP_EXCEEDED otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import DEADLINE_S, Core, expect_error, line, running

FAILED = grpc.StatusCode.FAILED_PRECONDITION
LINES = [line("L1", 30_000), line("L2", 70_000)]  # seed000: cap 5 % = 50 points


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with running("seed000", f"sqlite:///{tmp_path / 'core.db'}") as c:
        yield c


async def rich_customer(core: Core) -> str:
    cust = await core.register()  # welcome 100
    await core.grant(cust.customer_id, 900)
    return cust.customer_id


async def test_online_expected_mismatch(core: Core) -> None:
    cid = await rich_customer(core)
    draft = core.draft(await core.strong(cid), LINES, redeem=50)
    calc = await core.calculate(draft)
    assert [ln.discount for ln in calc.lines] == [1_500, 3_500]
    wrong = pb.Expected(redeemed_points=50, line_discounts={"L1": 2_000, "L2": 3_000}, points_to_accrue=19)
    await expect_error(core.commit(draft, "ON-1", expected=wrong), FAILED, "CALC_MISMATCH")
    assert await core.balance(cid) == 1_000
    assert (await core.report()).receipts == 0

    right = pb.Expected(redeemed_points=50, line_discounts={"L1": 1_500, "L2": 3_500}, points_to_accrue=19)
    result = await core.commit(draft, "ON-1", expected=right)  # the key was not burned
    assert not result.replayed
    assert result.balance == 1_000 - 50 + 19


async def test_offline_keeps_printed_discounts_and_uses_own_accrual(core: Core) -> None:
    cid = await rich_customer(core)
    draft = core.draft(await core.strong(cid), LINES, redeem=50)
    printed = pb.Expected(redeemed_points=50, line_discounts={"L1": 2_000, "L2": 3_000}, points_to_accrue=77)
    req = pb.CommitRequest(idempotency_key="OFF-1", draft=draft, expected=printed, offline=True)
    result = await core.stub.Commit(req, timeout=DEADLINE_S)
    c = result.calculation
    assert [ln.discount for ln in c.lines] == [2_000, 3_000]
    assert c.redeemed_ordinary + c.redeemed_certificate == 50
    assert c.payable == 95_000
    assert c.points_to_accrue == 19  # the core's own accrual, not the printed 77
    assert result.balance == 1_000 - 50 + 19


async def test_offline_refused_when_balance_or_cap_no_longer_allow(core: Core) -> None:
    cid = await rich_customer(core)
    too_much = core.draft(await core.strong(cid), LINES, redeem=60)
    req = pb.CommitRequest(
        idempotency_key="OFF-2", draft=too_much, offline=True, expected=pb.Expected(redeemed_points=60)
    )
    await expect_error(core.stub.Commit(req, timeout=DEADLINE_S), FAILED, "REDEMPTION_CAP_EXCEEDED")

    big = [line("L1", 10_000_000)]
    over = core.draft(await core.strong(cid), big, redeem=1_500)
    req = pb.CommitRequest(
        idempotency_key="OFF-3", draft=over, offline=True, expected=pb.Expected(redeemed_points=1_500)
    )
    await expect_error(core.stub.Commit(req, timeout=DEADLINE_S), FAILED, "INSUFFICIENT_POINTS")
    assert await core.balance(cid) == 1_000
    assert (await core.report()).receipts == 0
