"""AttachCustomer (simulators.core.corrections): a later copy of an anonymous sale names its
customer; applied once by its own key, it gives what the sale would have given with the customer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import Core, line, phone_ref, running
from tests.simulators.core.test_stream import exchange


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with running("seed002", f"sqlite:///{tmp_path / 'core.db'}") as c:
        yield c


def attach(key: str, sale_key: str, draft: pb.ReceiptDraft, seq: int = 1) -> pb.EventEnvelope:
    req = pb.AttachCustomerRequest(correction_key=key, sale=pb.SaleRef(sale_key=sale_key), draft=draft,
                                   register_id="R1")
    return pb.EventEnvelope(event_id=key, register_id="R1", register_seq=seq, attach_customer=req)


async def test_attach_customer_to_an_anonymous_sale_once(core: Core) -> None:
    cust = await core.register()  # welcome 300, tier 1: 3 %
    lines = [line("L1", 100_000), line("L2", 50_000)]
    anonymous = core.draft(pb.CustomerRef(), lines)
    sale = await core.commit(anonymous, key="C-S1")
    assert not sale.payouts
    merged = pb.ReceiptDraft()
    merged.CopyFrom(anonymous)
    merged.customer.CopyFrom(phone_ref(cust))
    (ack,) = await exchange(core, [attach("C-S1:correction:1", "C-S1", merged)])
    assert ack.WhichOneof("result") == "attach_customer", ack
    assert ack.attach_customer.points_accrued == 45 and not ack.attach_customer.replayed
    assert ack.attach_customer.operation_id == sale.operation_id
    assert await core.balance(cust.customer_id) == 345
    (again,) = await exchange(core, [attach("C-S1:correction:1", "C-S1", merged)])
    assert again.attach_customer.replayed and await core.balance(cust.customer_id) == 345
    # the sale now carries the customer: a full refund claws the accrual back
    await core.refund(sale.operation_id, full=True)
    assert await core.balance(cust.customer_id) == 300


async def test_attach_rejections(core: Core) -> None:
    cust, other = await core.register(), await core.register()
    anonymous = core.draft(pb.CustomerRef(), [line("L1", 100_000)])
    merged = pb.ReceiptDraft()
    merged.CopyFrom(anonymous)
    merged.customer.CopyFrom(phone_ref(cust))
    # the sale is not there yet: deferred, like a refund
    (early,) = await exchange(core, [attach("C-S2:correction:1", "C-S2", merged)])
    assert early.rejected.reason == "SALE_NOT_YET_KNOWN" and early.rejected.deferred
    await core.commit(anonymous, key="C-S2")
    other_goods = pb.ReceiptDraft()
    other_goods.CopyFrom(merged)
    other_goods.lines[0].amount = 90_000
    (conflict,) = await exchange(core, [attach("C-S2:correction:9", "C-S2", other_goods)])
    assert conflict.rejected.reason == "RECEIPT_CONFLICT" and not conflict.rejected.retriable
    (ok,) = await exchange(core, [attach("C-S2:correction:1", "C-S2", merged)])
    assert ok.WhichOneof("result") == "attach_customer"
    # the same customer under another correction key: a replay; another customer: refused
    (same,) = await exchange(core, [attach("C-S2:correction:2", "C-S2", merged)])
    assert same.attach_customer.replayed
    stranger = pb.ReceiptDraft()
    stranger.CopyFrom(merged)
    stranger.customer.CopyFrom(phone_ref(other))
    (refused,) = await exchange(core, [attach("C-S2:correction:3", "C-S2", stranger)])
    assert refused.rejected.reason == "CORRECTION_NOT_ALLOWED"
    assert await core.balance(other.customer_id) == 300
    # a redemption after the fact is bad input
    greedy = pb.ReceiptDraft()
    greedy.CopyFrom(merged)
    greedy.redeem_points = 10
    (bad,) = await exchange(core, [attach("C-S2:correction:4", "C-S2", greedy)])
    assert bad.rejected.reason == "INVALID_RECEIPT"


async def test_attach_to_a_refunded_sale_is_not_allowed(core: Core) -> None:
    cust = await core.register()
    anonymous = core.draft(pb.CustomerRef(), [line("L1", 100_000, qty=2)])
    sale = await core.commit(anonymous, key="C-S3")
    await core.refund(sale.operation_id, lines={"L1": 1})
    merged = pb.ReceiptDraft()
    merged.CopyFrom(anonymous)
    merged.customer.CopyFrom(phone_ref(cust))
    (ack,) = await exchange(core, [attach("C-S3:correction:1", "C-S3", merged)])
    assert ack.rejected.reason == "CORRECTION_NOT_ALLOWED"
    assert await core.balance(cust.customer_id) == 300
