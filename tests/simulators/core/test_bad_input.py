"""Acceptance: bad and hostile input gets the documented status, reason and field, and
changes nothing (loyalty-rules.md §2.5, the API's error conventions).

One core (seed002, SQLite) serves the module; every rejection is checked against the
customer's balance and the report, and a rejected Commit does not burn its idempotency key.
Unknown program keys: ``test_check_program.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import grpc
import pytest
import pytest_asyncio

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import (
    DEADLINE_S,
    Core,
    expect_error,
    line,
    phone_ref,
    running,
    ts,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def core(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Core]:
    db = tmp_path_factory.mktemp("bad_input") / "core.db"
    async with running("seed002", f"sqlite:///{db}") as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def customer(core: Core) -> pb.Customer:
    cust = await core.register()
    await core.buy(phone_ref(cust), 100_000)
    return await core.customer(cust.customer_id)


async def snapshot(core: Core, customer: pb.Customer) -> tuple[int, int, int, int]:
    state = await core.customer(customer.customer_id)
    report = await core.report()
    return state.balance, state.held_points, report.receipts, report.gross


BAD_LINES: list[tuple[str, Callable[[], list[pb.Line]], int, str]] = [
    ("negative-amount", lambda: [line("L1", 10_000), line("L2", -1)], 0, "draft.lines[1].amount"),
    ("zero-qty", lambda: [line("L1", 10_000, qty=0)], 0, "draft.lines[0].qty_milli"),
    ("negative-qty", lambda: [line("L1", 10_000, qty=-1)], 0, "draft.lines[0].qty_milli"),
    ("empty-receipt", lambda: [], 0, "draft.lines"),
    ("duplicate-line-id", lambda: [line("L1", 10_000), line("L1", 20_000)], 0, "draft.lines[1].line_id"),
    ("total-mismatch", lambda: [line("L1", 10_000), line("L2", 5_000)], 15_001, "draft.total"),
    (
        "floor-above-amount",
        lambda: [line("L1", 10_000, min_unit_price=10_001)],
        0,
        "draft.lines[0].min_unit_price",
    ),
    ("negative-price", lambda: [line("L1", 10_000, price=-1)], 0, "draft.lines[0].price"),
    (
        "negative-min-unit-price",
        lambda: [line("L1", 10_000, min_unit_price=-1)],
        0,
        "draft.lines[0].min_unit_price",
    ),
    ("empty-line-id", lambda: [line("L1", 10_000), line("", 10)], 0, "draft.lines[1].line_id"),
]


@pytest.mark.parametrize(
    ("lines", "total", "field"), [b[1:] for b in BAD_LINES], ids=[b[0] for b in BAD_LINES]
)
async def test_invalid_receipt_rejected_and_nothing_stored(
    core: Core, customer: pb.Customer, lines: Callable[[], list[pb.Line]], total: int, field: str
) -> None:
    before = await snapshot(core, customer)
    key = core.key("BAD")
    draft = core.draft(phone_ref(customer), lines(), total=total)
    for call in (core.calculate(draft), core.commit(draft, key)):
        meta = await expect_error(call, INVALID, "INVALID_RECEIPT")
        assert meta.get("field") == field, meta
    assert await snapshot(core, customer) == before
    # the key was not burned: the corrected receipt goes through under it
    fixed = core.draft(phone_ref(customer), [line("L1", 10_000)])
    result = await core.commit(fixed, key)
    assert not result.replayed
    assert (await core.report()).receipts == before[2] + 1


async def test_unknown_customer(core: Core, customer: pb.Customer) -> None:
    before = await snapshot(core, customer)
    ref = pb.CustomerRef(phone="+79990000001")
    await expect_error(
        core.stub.IdentifyCustomer(pb.IdentifyCustomerRequest(customer=ref), timeout=DEADLINE_S),
        NOT_FOUND,
        "UNKNOWN_CUSTOMER",
    )
    draft = core.draft(ref, [line("L1", 10_000)])
    await expect_error(core.calculate(draft), NOT_FOUND, "UNKNOWN_CUSTOMER")
    await expect_error(core.commit(draft), NOT_FOUND, "UNKNOWN_CUSTOMER")
    await expect_error(
        core.calculate(core.draft(pb.CustomerRef(customer_id="999999"), [line("L1", 1)])),
        NOT_FOUND,
        "UNKNOWN_CUSTOMER",
    )
    assert await snapshot(core, customer) == before


async def test_app_code_single_use_and_45_minutes(core: Core, customer: pb.Customer) -> None:
    def identify(ref: pb.CustomerRef, minutes: int = 0):  # type: ignore[no-untyped-def]
        at = ts(core.clock.now + timedelta(minutes=minutes))
        return core.stub.IdentifyCustomer(pb.IdentifyCustomerRequest(customer=ref, at=at), timeout=DEADLINE_S)

    old = await core.strong(customer.customer_id)
    assert (await identify(old, 44)).customer.customer_id == customer.customer_id
    await expect_error(identify(old, 46), NOT_FOUND, "CODE_EXPIRED")
    await expect_error(identify(pb.CustomerRef(app_code="000000")), NOT_FOUND, "CODE_EXPIRED")

    used = await core.strong(customer.customer_id)
    await core.commit(core.draft(used, [line("L1", 10_000)]))
    await expect_error(identify(used), NOT_FOUND, "CODE_EXPIRED")
    await expect_error(core.commit(core.draft(used, [line("L1", 10_000)])), NOT_FOUND, "CODE_EXPIRED")


async def test_weak_identification_cannot_redeem(core: Core, customer: pb.Customer) -> None:
    card = (await core.stub.RegisterCustomer(
        pb.RegisterCustomerRequest(card="CARD-0001", name="Пётр Сидоров", occurred_at=ts(core.clock.now)),
        timeout=DEADLINE_S,
    )).customer
    await core.grant(card.customer_id, 100)
    before = await snapshot(core, customer)
    draft = core.draft(pb.CustomerRef(card="CARD-0001"), [line("L1", 100_000)], redeem=10)
    await expect_error(core.calculate(draft), grpc.StatusCode.PERMISSION_DENIED, "REDEMPTION_NOT_PERMITTED")
    await expect_error(core.commit(draft), grpc.StatusCode.PERMISSION_DENIED, "REDEMPTION_NOT_PERMITTED")
    calc = await core.calculate(core.draft(pb.CustomerRef(card="CARD-0001"), [line("L1", 100_000)]))
    assert calc.max_points == 0
    assert calc.limited_by == "identification"
    assert await snapshot(core, customer) == before


async def test_phone_otp(core: Core, customer: pb.Customer) -> None:
    sent = await core.stub.SendOtp(pb.SendOtpRequest(phone=customer.phone), timeout=DEADLINE_S)
    assert sent.sent and sent.debug_code
    wrong = "0000" if sent.debug_code != "0000" else "1111"
    bad = core.draft(pb.CustomerRef(phone=customer.phone, otp=wrong), [line("L1", 100_000)], redeem=10)
    await expect_error(core.calculate(bad), grpc.StatusCode.FAILED_PRECONDITION, "OTP_INVALID")
    good = core.draft(
        pb.CustomerRef(phone=customer.phone, otp=sent.debug_code), [line("L1", 100_000)], redeem=10
    )
    calc = await core.calculate(good)
    assert calc.redeemed_ordinary + calc.redeemed_certificate == 10


async def test_oversized_message_refused(core: Core, customer: pb.Customer) -> None:
    before = await snapshot(core, customer)
    huge = line("L1", 10_000)
    huge.name = "x" * (4 * 1024 * 1024 + 1)
    await expect_error(
        core.commit(core.draft(phone_ref(customer), [huge])), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert await snapshot(core, customer) == before
