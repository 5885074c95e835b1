"""Confirmation codes in the reference core (SendOtp / VerifyOtp) sent through SMS.ru's API (its simulator).

The core issues a 4-digit code, keeps only its salted hash, texts it through the SMS.ru adapter
and answers it once; one code per phone per minute and five per hour; five wrong tries lock the
phone for 15 minutes; a code expires after 10 minutes; a provider that is slow (30 s) or down is
answered ``not_sent`` within the caller's wait and the code is withdrawn; a duplicate delivery
changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from simulators.core.server import running_core_handle
from simulators.core.sms import SmsRu
from simulators.core.tables import ConfirmationCode
from simulators.sms.smsru import Faults, SmsRuSimulator, serving
from tests.simulators.core.acceptance import DEADLINE_S, Clock, expect_error, load, new_phone

API_ID = "sim-api-id"


@dataclass
class Rig:
    stub: pb_grpc.LoyaltyCoreServiceStub
    sms: SmsRuSimulator
    clock: Clock
    handle: object

    async def send(self, phone: str, wait_ms: int = 2000, purpose: str = "spending") -> pb.SendOtpResponse:
        return await self.stub.SendOtp(
            pb.SendOtpRequest(phone=phone, purpose=purpose, wait_ms=wait_ms), timeout=DEADLINE_S
        )

    async def verify(self, phone: str, code: str) -> pb.VerifyOtpResponse:
        return await self.stub.VerifyOtp(pb.VerifyOtpRequest(phone=phone, code=code), timeout=DEADLINE_S)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    sim = SmsRuSimulator(API_ID)
    clock = Clock()
    async with (
        serving(sim) as url,
        running_core_handle(
            load("seed004"), f"sqlite:///{tmp_path / 'c.db'}", now=clock, sender=SmsRu(API_ID, url)
        ) as handle,
    ):
        async with grpc.aio.insecure_channel(handle.address) as channel:
            yield Rig(pb_grpc.LoyaltyCoreServiceStub(channel), sim, clock, handle)


def _wrong(code: str) -> str:
    return "0000" if code != "0000" else "1111"


async def test_the_code_is_texted_answered_once_and_stored_hashed(rig: Rig) -> None:
    phone = new_phone()
    sent = await rig.send(phone, purpose="registration")
    assert sent.sent and sent.status == "sent" and len(sent.code) == 4 and sent.debug_code == ""
    assert rig.sms.last_code(phone) == sent.code and "регистрации" in rig.sms.inbox[phone.lstrip("+")][-1]
    rows = rig.handle.core.db.transaction(  # type: ignore[attr-defined]
        lambda s: list(s.scalars(select(ConfirmationCode))), write=False
    )
    assert (
        len(rows) == 1 and sent.code not in (rows[0].code_hash, rows[0].salt) and len(rows[0].code_hash) == 64
    )
    ok = await rig.verify(phone, sent.code)
    assert ok.ok and ok.reason == ""


async def test_one_code_a_minute_and_five_an_hour(rig: Rig) -> None:
    phone = new_phone()
    assert (await rig.send(phone)).sent
    again = await rig.send(phone)
    assert (again.sent, again.status, again.code) == (
        False,
        "rate_limited",
        "",
    ) and 0 < again.retry_after_s <= 60
    for _ in range(4):
        rig.clock.advance(seconds=61)
        assert (await rig.send(phone)).sent
    rig.clock.advance(seconds=61)
    sixth = await rig.send(phone)
    assert sixth.status == "rate_limited" and sixth.retry_after_s > 60
    assert len(rig.sms.inbox[phone.lstrip("+")]) == 5


async def test_a_registration_code_does_not_hold_back_the_spending_code(rig: Rig) -> None:
    phone = new_phone()
    assert (await rig.send(phone, purpose="registration")).sent
    spending = await rig.send(phone, purpose="spending")
    assert spending.sent and (await rig.verify(phone, spending.code)).ok
    assert (await rig.send(phone, purpose="spending")).status == "rate_limited"


async def test_five_wrong_codes_lock_the_phone_and_the_right_one_then_fails(rig: Rig) -> None:
    phone = new_phone()
    code = (await rig.send(phone)).code
    for left in (4, 3, 2, 1):
        wrong = await rig.verify(phone, _wrong(code))
        assert (wrong.ok, wrong.reason, wrong.tries_left) == (False, "OTP_INVALID", left)
    locked = await rig.verify(phone, _wrong(code))
    assert (locked.ok, locked.reason) == (False, "OTP_LOCKED")
    assert (await rig.verify(phone, code)).reason == "OTP_LOCKED"
    assert (await rig.send(phone)).status == "locked"
    rig.clock.advance(minutes=16)
    fresh = await rig.send(phone)
    assert fresh.sent and (await rig.verify(phone, fresh.code)).ok


async def test_a_code_expires_and_confirms_nothing_in_a_calculate(rig: Rig) -> None:
    phone = new_phone()
    await rig.stub.RegisterCustomer(pb.RegisterCustomerRequest(phone=phone, name="Анна"), timeout=DEADLINE_S)
    code = (await rig.send(phone)).code
    rig.clock.advance(minutes=11)
    assert (await rig.verify(phone, code)).reason == "OTP_EXPIRED"
    draft = pb.ReceiptDraft(
        customer=pb.CustomerRef(phone=phone, otp=code),
        register_id="R1",
        receipt_number="1",
        lines=[pb.Line(line_id="L1", sku="S", name="n", qty_milli=1000, amount=10_000)],
        redeem_points=10,
    )
    await expect_error(
        rig.stub.Calculate(pb.CalculateRequest(draft=draft), timeout=DEADLINE_S),
        grpc.StatusCode.FAILED_PRECONDITION,
        "OTP_INVALID",
    )


@pytest.mark.parametrize(
    "faults",
    [Faults(delay_s=30.0), Faults(down=True), Faults(refuse=True)],
    ids=["slow-30s", "down", "refusing"],
)
async def test_a_slow_or_failing_provider_is_answered_in_the_wait_and_the_code_withdrawn(
    rig: Rig, faults: Faults
) -> None:
    phone = new_phone()
    rig.sms.faults = faults
    failed = await rig.stub.SendOtp(pb.SendOtpRequest(phone=phone, wait_ms=300), timeout=2.0)  # never 30 s
    assert (failed.sent, failed.status, failed.code) == (False, "not_sent", "") and failed.message
    rig.sms.faults = Faults()
    retry = await rig.send(phone)  # a withdrawn code does not hold the next request back
    assert retry.sent and rig.sms.last_code(phone) == retry.code


async def test_a_duplicate_delivery_changes_nothing(rig: Rig) -> None:
    phone = new_phone()
    rig.sms.faults = Faults(duplicate=True)
    sent = await rig.send(phone)
    assert rig.sms.inbox[phone.lstrip("+")] == [rig.sms.inbox[phone.lstrip("+")][0]] * 2
    assert (await rig.verify(phone, rig.sms.last_code(phone))).ok and rig.sms.last_code(phone) == sent.code


async def test_bad_phone_is_invalid_argument(rig: Rig) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.send("call me")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_sale_confirmed_in_time_and_delivered_after_the_code_expired_counts(rig: Rig) -> None:
    phone = new_phone()
    await rig.stub.RegisterCustomer(pb.RegisterCustomerRequest(phone=phone, name="Анна"), timeout=DEADLINE_S)
    cust = (await rig.stub.IdentifyCustomer(
        pb.IdentifyCustomerRequest(customer=pb.CustomerRef(phone=phone)), timeout=DEADLINE_S
    )).customer
    await rig.stub.IssueGrant(
        pb.IssueGrantRequest(
            customer=pb.CustomerRef(customer_id=cust.customer_id), kind="manual", points=100, grant_key="g1"
        ),
        timeout=DEADLINE_S,
    )
    code = (await rig.send(phone)).code
    sold_at = rig.clock.now
    rig.clock.advance(minutes=30)  # the core was away: the sale arrives after the code expired

    def draft(redeem: int, at: Any, number: str) -> pb.ReceiptDraft:
        stamp = Timestamp()
        stamp.FromDatetime(at)
        return pb.ReceiptDraft(
            customer=pb.CustomerRef(phone=phone, otp=code),
            register_id="R1",
            receipt_number=number,
            occurred_at=stamp,
            redeem_points=redeem,
            lines=[pb.Line(line_id="L1", sku="S", name="n", qty_milli=1000, amount=10_000)],
        )

    done = await rig.stub.Commit(
        pb.CommitRequest(idempotency_key="late-1", draft=draft(10, sold_at, "1")), timeout=DEADLINE_S
    )
    assert done.calculation.redeemed_ordinary + done.calculation.redeemed_certificate == 10
    await expect_error(  # a sale made after the code expired is not confirmed by it
        rig.stub.Commit(
            pb.CommitRequest(idempotency_key="late-2", draft=draft(10, rig.clock.now, "2")),
            timeout=DEADLINE_S,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "OTP_INVALID",
    )
