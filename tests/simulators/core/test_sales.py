"""simulators/core/sales.py: when the points of a committed sale become spendable.

A till whose clock runs ahead stamps a sale minutes after the core's "now". Without
``defer_days`` the accrual is spendable as soon as the core holds it (loyalty-rules.md §1,
Expiry: only ``defer_days`` delays it): the customer's balance shows it at once, the next receipt
can spend it, and a return or rollback the till sends at the right time (so stamped *before* the
sale) takes back exactly what the sale gave. Expiry still counts from the sale's own time.
With ``defer_days`` the accrual still waits for 00:00 local after the deferral.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import Core, expect_error, line, load, msk, phone_ref, running
from tests.simulators.core.test_corrections import attach
from tests.simulators.core.test_stream import exchange

AHEAD = timedelta(minutes=3)  # the onec till simulator's clock_ahead


async def _customer(core: Core) -> str:
    """A seed002 customer (tier 1: 3 %) whose welcome bonus expired: balance 0."""
    cust = await core.register(at=core.clock.now - timedelta(days=400))
    assert await core.balance(cust.customer_id) == 0
    return str(cust.customer_id)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with running("seed002", f"sqlite:///{tmp_path / 'core.db'}") as c:
        yield c


async def test_a_sale_stamped_ahead_of_the_core_shows_its_points_at_once(core: Core) -> None:
    cid = await _customer(core)
    sale = await core.buy(phone_ref(await core.customer(cid)), 100_000, at=core.clock.now + AHEAD)
    assert sale.calculation.points_to_accrue == 30
    assert sale.balance == 30
    assert await core.balance(cid) == 30  # the core's "now", before the till's stamp

    # the next receipt, stamped by a till with the right clock, may spend them
    spend = await core.commit(core.draft(await core.strong(cid), [line("L1", 100_000)], redeem=10))
    assert spend.calculation.redeemed_ordinary + spend.calculation.redeemed_certificate == 10
    assert spend.calculation.points_to_accrue == 29  # 3 % of 990 ₽
    assert await core.balance(cid) == 30 - 10 + 29


async def test_a_return_stamped_before_its_sale_takes_back_exactly_the_accrual(core: Core) -> None:
    cid = await _customer(core)
    sale = await core.buy(phone_ref(await core.customer(cid)), 100_000, at=core.clock.now + AHEAD)
    refund = await core.refund(sale.operation_id, full=True)  # stamped now: 3 minutes before the sale
    assert [(cb.kind, cb.points, cb.shortfall) for cb in refund.clawbacks] == [("accrual", 30, 0)]
    assert (refund.balance, refund.debt) == (0, 0)
    assert await core.balance(cid) == 0
    assert (await core.customer(cid)).debt == 0


async def test_a_rollback_stamped_before_its_sale_removes_the_accrual(core: Core) -> None:
    cid = await _customer(core)
    sale = await core.buy(phone_ref(await core.customer(cid)), 100_000, at=core.clock.now + AHEAD)
    cancelled = await core.cancel(sale.operation_id)
    assert (cancelled.points_removed, cancelled.balance, cancelled.debt) == (30, 0, 0)
    assert await core.balance(cid) == 0


async def test_deferred_points_still_wait_for_their_day(tmp_path: Path) -> None:
    async with running(load("seed002", defer_days=1), f"sqlite:///{tmp_path / 'core.db'}") as core:
        core.clock.set(msk(2025, 6, 10, 12))
        cid = await _customer(core)
        await core.buy(phone_ref(await core.customer(cid)), 100_000, at=core.clock.now + AHEAD)
        assert await core.balance(cid) == 0
        core.clock.set(msk(2025, 6, 11, 0))  # 00:00 local the next day
        assert await core.balance(cid) == 30


# ---------------------------------------------------------------- a contact, not an identification


async def test_a_contact_that_matches_nobody_sells_without_loyalty(core: Core) -> None:
    """CustomerRef.if_known: the buyer's phone for an e-receipt (SBIS) is a contact; an unknown
    one makes an anonymous sale, answered customer_unknown, instead of UNKNOWN_CUSTOMER (the
    operator queue). Without the flag the same phone is still refused."""
    stranger = "+79990004455"
    plain = core.draft(pb.CustomerRef(phone=stranger), [line("L1", 100_000)])
    await expect_error(core.commit(plain), grpc.StatusCode.NOT_FOUND, "UNKNOWN_CUSTOMER")
    contact = core.draft(pb.CustomerRef(phone=stranger, if_known=True), [line("L1", 100_000)])
    sale = await core.commit(contact, key="IFK-1")
    assert sale.customer_unknown and not sale.payouts and not sale.replayed
    again = await core.commit(contact, key="IFK-1")
    assert again.replayed and again.customer_unknown and again.operation_id == sale.operation_id
    for odd in ("not a phone", "+1"):  # a contact the core cannot even read: anonymous as well
        answer = await core.commit(core.draft(pb.CustomerRef(phone=odd, if_known=True), [line("L1", 5_000)]))
        assert answer.customer_unknown


async def test_a_known_contact_earns_as_usual_and_a_later_member_claims_by_correction(core: Core) -> None:
    cid = await _customer(core)
    member = await core.customer(cid)
    known = await core.commit(core.draft(pb.CustomerRef(phone=member.phone, if_known=True),
                                         [line("L1", 100_000)]))
    assert not known.customer_unknown and known.calculation.points_to_accrue == 30
    assert await core.balance(cid) == 30
    # an anonymous contact sale, then the buyer joins: the correction gives them the sale's points
    newcomer = "+79990004466"
    draft = core.draft(pb.CustomerRef(phone=newcomer, if_known=True), [line("L1", 200_000)])
    sale = await core.commit(draft, key="IFK-2")
    assert sale.customer_unknown
    joined = await core.register(newcomer)
    before = await core.balance(joined.customer_id)
    claim = pb.ReceiptDraft()
    claim.CopyFrom(draft)
    claim.customer.CopyFrom(pb.CustomerRef(phone=newcomer))
    (ack,) = await exchange(core, [attach("IFK-2:correction:1", "IFK-2", claim)])
    assert ack.WhichOneof("result") == "attach_customer", ack
    assert ack.attach_customer.operation_id == sale.operation_id and ack.attach_customer.points_accrued > 0
    assert await core.balance(joined.customer_id) == before + ack.attach_customer.points_accrued


async def test_a_blocked_members_contact_sells_without_loyalty(tmp_path: Path) -> None:
    """A contact (if_known) of a blocked member is an anonymous sale, like one matching nobody;
    the same phone as an identification is still refused CUSTOMER_BLOCKED."""
    db = tmp_path / "blocked.db"
    async with running("seed002", f"sqlite:///{db}") as core:
        cid = await _customer(core)
        phone = (await core.customer(cid)).phone
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE customers SET blocked = 1 WHERE id = ?", (int(cid),))
        ident = core.draft(pb.CustomerRef(phone=phone), [line("L1", 100_000)])
        await expect_error(core.commit(ident), grpc.StatusCode.FAILED_PRECONDITION, "CUSTOMER_BLOCKED")
        contact = pb.CustomerRef(phone=phone, if_known=True)
        sale = await core.commit(core.draft(contact, [line("L1", 100_000)]))
        assert sale.customer_unknown and not sale.payouts
        assert await core.balance(cid) == 0
