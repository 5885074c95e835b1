"""A phone typed at the till without an SMS code is weak identification (loyalty-rules.md §1, §2.1).

The receipt of worked example E2 (seed000: 2 %, cap 5 %, balance 1 000; lines 33_333 / 33_333 /
33_334, ``max_points`` 50 for a strong identification): the same customer named by a typed phone
gets ``max_points`` 0 limited by the identification, on the read-only fast path and on the ORM
path (a hold asked); a redemption asked without a code is OTP_REQUIRED (the program offers
``phone_otp``), a wrong code OTP_INVALID; the right code gives back the tier cap's 50.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import DEADLINE_S, Core, expect_error, line, phone_ref, running

FAILED = grpc.StatusCode.FAILED_PRECONDITION
E2_LINES = [line("L1", 33_333), line("L2", 33_333), line("L3", 33_334)]


@pytest.fixture
async def core000(tmp_path: Path) -> AsyncIterator[Core]:
    async with running("seed000", f"sqlite:///{tmp_path / 'core.db'}") as core:
        yield core


async def _e2_customer(core: Core) -> pb.Customer:
    cust = await core.register()
    await core.grant(cust.customer_id, 900)
    assert await core.balance(cust.customer_id) == 1_000
    return cust


@pytest.mark.parametrize("hold_ttl_s", [0, 60], ids=["fast-path", "orm-path"])
async def test_a_typed_phone_without_a_code_may_not_redeem(core000: Core, hold_ttl_s: int) -> None:
    core = core000
    cust = await _e2_customer(core)
    strong = await core.calculate(core.draft(await core.strong(cust.customer_id), E2_LINES))
    assert strong.max_points == 50  # the worked example's figure for a strong identification

    weak = await core.calculate(core.draft(phone_ref(cust), E2_LINES), hold_ttl_s=hold_ttl_s)
    assert weak.max_points == 0
    assert weak.limited_by == "identification"
    assert weak.points_to_accrue == 20  # accrual is the same as E2's before redemption (2 % of 100_000)

    asked = core.draft(phone_ref(cust), E2_LINES, redeem=50)
    await expect_error(core.calculate(asked, hold_ttl_s=hold_ttl_s), FAILED, "OTP_REQUIRED")


async def test_the_sms_code_makes_the_phone_strong_and_a_wrong_one_confirms_nothing(core000: Core) -> None:
    core = core000
    cust = await _e2_customer(core)
    sent = await core.stub.SendOtp(pb.SendOtpRequest(phone=cust.phone), timeout=DEADLINE_S)
    wrong = "0000" if sent.debug_code != "0000" else "1111"
    await expect_error(core.calculate(core.draft(pb.CustomerRef(phone=cust.phone, otp=wrong), E2_LINES,
                                                 redeem=50)), FAILED, "OTP_INVALID")
    ok = await core.calculate(core.draft(pb.CustomerRef(phone=cust.phone, otp=sent.debug_code), E2_LINES))
    assert ok.max_points == 50 and ok.limited_by == "tier_cap"


async def test_a_commit_on_a_typed_phone_with_points_is_refused(core000: Core) -> None:
    core = core000
    cust = await _e2_customer(core)
    await expect_error(core.commit(core.draft(phone_ref(cust), E2_LINES, redeem=50)), FAILED, "OTP_REQUIRED")
    assert await core.balance(cust.customer_id) == 1_000
