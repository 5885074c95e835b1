"""Acceptance: idempotency of Commit / Refund / Cancel (loyalty-rules.md §2.2 step 1, E12).

Runs on SQLite and PostgreSQL. A replay is the same request resent (same key, same content,
even with an app code the first attempt consumed): it returns the stored result with
``replayed = true`` and changes nothing. The same key with other content is ALREADY_EXISTS /
RECEIPT_CONFLICT and changes nothing. ``expected`` is not part of the content.
"""

from __future__ import annotations

import grpc

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import Core, expect_error, line, phone_ref, running

FAILED = grpc.StatusCode.FAILED_PRECONDITION
E2_LINES = [line("L1", 33_333), line("L2", 33_333), line("L3", 33_334)]


def without_replayed(msg: pb.CommitResponse | pb.RefundResponse | pb.CancelResponse) -> bytes:
    copy = type(msg)()
    copy.CopyFrom(msg)
    copy.replayed = False
    return copy.SerializeToString(deterministic=True)


async def e2_customer(core: Core) -> str:
    cust = await core.register()
    await core.grant(cust.customer_id, 900)
    assert await core.balance(cust.customer_id) == 1_000
    return cust.customer_id


async def test_e12_idempotency(db_url: str) -> None:
    async with running("seed000", db_url) as core:
        cid = await e2_customer(core)
        draft = core.draft(await core.strong(cid), E2_LINES, redeem=50)
        first = await core.commit(draft, "T1-FD-000123")
        assert first.operation_id and not first.replayed
        assert first.balance == 969
        again = await core.commit(draft, "T1-FD-000123")  # the app code is already consumed
        assert again.replayed
        assert without_replayed(again) == without_replayed(first)
        assert await core.balance(cid) == 969

        changed = pb.ReceiptDraft()
        changed.CopyFrom(draft)
        changed.lines[2].amount = 33_300
        await expect_error(
            core.commit(changed, "T1-FD-000123"), grpc.StatusCode.ALREADY_EXISTS, "RECEIPT_CONFLICT"
        )
        assert await core.balance(cid) == 969

        cancelled = await core.cancel(first.operation_id)
        assert cancelled.balance == 1_000
        assert await core.balance(cid) == 1_000
        await expect_error(core.refund(first.operation_id, full=True), FAILED, "OPERATION_CANCELLED")
        assert await core.balance(cid) == 1_000


async def test_replay_ignores_expected_and_conflicts_on_content(db_url: str) -> None:
    async with running("seed002", db_url) as core:
        cust = await core.register()
        draft = core.draft(phone_ref(cust), [line("L1", 100_000), line("L2", 20_000)])
        first = await core.commit(draft, "K-1")
        report = await core.report()
        assert report.receipts == 1

        with_expected = await core.commit(draft, "K-1", expected=pb.Expected(points_to_accrue=999))
        assert with_expected.replayed
        assert without_replayed(with_expected) == without_replayed(first)

        other = await core.register()
        for mutate in (
            lambda d: d.lines[0].__setattr__("amount", 100_001),
            lambda d: d.lines.append(line("L3", 1)),
            lambda d: d.customer.__setattr__("phone", other.phone),
            lambda d: d.__setattr__("redeem_points", 10),
        ):
            changed = pb.ReceiptDraft()
            changed.CopyFrom(draft)
            mutate(changed)
            await expect_error(
                core.commit(changed, "K-1"), grpc.StatusCode.ALREADY_EXISTS, "RECEIPT_CONFLICT"
            )

        assert await core.balance(cust.customer_id) == first.balance
        assert await core.balance(other.customer_id) == 300
        after = await core.report()
        assert (after.receipts, after.gross) == (1, 120_000)


async def test_refund_and_cancel_keys_replay(db_url: str) -> None:
    async with running("seed002", db_url) as core:
        cust = await core.register()
        sale = await core.buy(phone_ref(cust), 100_000, 50_000)
        r1 = await core.refund(sale.operation_id, lines={"L2": 1}, key="RF-1")
        r1_again = await core.refund(sale.operation_id, lines={"L2": 1}, key="RF-1")
        assert r1_again.replayed and not r1.replayed
        assert without_replayed(r1_again) == without_replayed(r1)
        assert await core.balance(cust.customer_id) == r1.balance
        assert (await core.report()).money_refunded == 50_000

        other = await core.buy(phone_ref(cust), 200_000)
        c1 = await core.cancel(other.operation_id, key="CX-1")
        c1_again = await core.cancel(other.operation_id, key="CX-1")
        assert c1_again.replayed and not c1.replayed
        assert without_replayed(c1_again) == without_replayed(c1)
        assert await core.balance(cust.customer_id) == r1.balance
