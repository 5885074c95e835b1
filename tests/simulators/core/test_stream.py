"""Acceptance: the StreamEvents delivery stream.

Every StreamEventsRequest is answered by one StreamEventsResponse with exactly one EventAck per event (same
event_id / register / seq, in the batch's order) carrying the result or a rejection with its
§2.5 reason; events of one register are acknowledged in the order sent; a business failure
or bad input is a rejection, not the end of the stream; after a reconnect, resending an
already applied event is answered as a replay and changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import DEADLINE_S, Core, line, phone_ref, running


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with running("seed002", f"sqlite:///{tmp_path / 'core.db'}") as c:
        yield c


async def exchange(core: Core, events: Sequence[pb.EventEnvelope], per_batch: int = 0) -> list[pb.EventAck]:
    """Open a stream, send ``events`` as StreamEventsRequests of ``per_batch`` (0: all in one), read one
    StreamEventsResponse per batch (one ack per event, in order), close the stream."""
    call = core.stub.StreamEvents(timeout=DEADLINE_S)
    size = per_batch or max(len(events), 1)
    batches = [list(events[i:i + size]) for i in range(0, len(events), size)]
    acks: list[pb.EventAck] = []
    try:
        for batch in batches:
            await call.write(pb.StreamEventsRequest(events=batch))
        for batch in batches:
            reply = await asyncio.wait_for(call.read(), DEADLINE_S)
            assert reply is not grpc.aio.EOF, "stream ended before every batch was acknowledged"
            assert [a.event_id for a in reply.acks] == [e.event_id for e in batch]
            acks.extend(reply.acks)
        await call.done_writing()
        assert await asyncio.wait_for(call.read(), DEADLINE_S) is grpc.aio.EOF
    finally:
        call.cancel()
    return acks


def envelope(seq: int, **body: pb.CommitRequest | pb.RefundRequest | pb.CancelRequest) -> pb.EventEnvelope:
    ((kind, msg),) = body.items()
    key = {"commit": "idempotency_key", "refund": "refund_key", "cancel": "cancel_key"}[kind]
    return pb.EventEnvelope(event_id=getattr(msg, key), register_id="R1", register_seq=seq, **body)


async def test_acks_rejections_and_replay_after_reconnect(core: Core) -> None:
    cust = await core.register()  # welcome 300
    cid = cust.customer_id
    sale = envelope(
        1,
        commit=pb.CommitRequest(
            idempotency_key="EV-1",
            draft=core.draft(phone_ref(cust), [line("L1", 100_000), line("L2", 50_000)]),
        ),
    )
    greedy = envelope(
        2,
        commit=pb.CommitRequest(
            idempotency_key="EV-2",
            draft=core.draft(await core.strong(cid), [line("L1", 10_000_000)], redeem=5_000),
        ),
    )
    invalid = envelope(
        3,
        commit=pb.CommitRequest(idempotency_key="EV-3", draft=core.draft(phone_ref(cust), [line("L1", -5)])),
    )
    second = envelope(
        4,
        commit=pb.CommitRequest(
            idempotency_key="EV-4", draft=core.draft(phone_ref(cust), [line("L1", 200_000)])
        ),
    )

    acks = await exchange(core, [sale, greedy, invalid, second], per_batch=3)
    assert [(a.event_id, a.register_id, a.register_seq) for a in acks] == [
        ("EV-1", "R1", 1),
        ("EV-2", "R1", 2),
        ("EV-3", "R1", 3),
        ("EV-4", "R1", 4),
    ]
    assert [a.WhichOneof("result") for a in acks] == ["commit", "rejected", "rejected", "commit"]
    first = acks[0].commit
    assert first.operation_id and not first.replayed
    assert first.calculation.points_to_accrue == 45
    assert acks[1].rejected.reason == "INSUFFICIENT_POINTS"
    assert not acks[1].rejected.retriable
    assert acks[1].rejected.metadata.get("available") == "345"
    assert acks[2].rejected.reason == "INVALID_RECEIPT"
    assert not acks[2].rejected.retriable
    assert acks[2].rejected.metadata.get("field") == "draft.lines[0].amount"
    assert acks[3].commit.balance == 300 + 45 + 60
    balance = await core.balance(cid)
    assert balance == 405

    # reconnect: resend everything not known to be applied, plus an already applied event
    refund = envelope(
        5,
        refund=pb.RefundRequest(
            refund_key="EV-5",
            sale=pb.SaleRef(operation_id=first.operation_id),
            lines=[pb.RefundLine(line_id="L2", qty_milli=1000)],
        ),
    )
    acks2 = await exchange(core, [sale, refund, second])
    assert [a.WhichOneof("result") for a in acks2] == ["commit", "refund", "commit"]
    assert acks2[0].commit.replayed and acks2[0].commit.operation_id == first.operation_id
    assert acks2[2].commit.replayed and acks2[2].commit.operation_id == acks[3].commit.operation_id
    assert acks2[1].refund.money_refunded == 50_000
    assert await core.balance(cid) == 405 - 15

    cancel = envelope(
        6,
        cancel=pb.CancelRequest(cancel_key="EV-6", sale=pb.SaleRef(operation_id=acks[3].commit.operation_id)),
    )
    acks3 = await exchange(core, [refund, cancel, cancel])
    assert [a.WhichOneof("result") for a in acks3] == ["refund", "cancel", "cancel"]
    assert acks3[0].refund.replayed
    assert not acks3[1].cancel.replayed and acks3[2].cancel.replayed
    assert await core.balance(cid) == 405 - 15 - 60
    assert (await core.report()).receipts == 1


async def test_many_events_acknowledged_in_order(core: Core) -> None:
    cust = await core.register()
    events = [
        envelope(
            i,
            commit=pb.CommitRequest(
                idempotency_key=f"ORD-{i}", draft=core.draft(phone_ref(cust), [line("L1", 10_000 * i)])
            ),
        )
        for i in range(1, 21)
    ]
    acks = await exchange(core, events)
    assert [a.register_seq for a in acks] == list(range(1, 21))
    assert all(a.WhichOneof("result") == "commit" and not a.commit.replayed for a in acks)
    balances = [a.commit.balance for a in acks]
    assert balances == sorted(balances) and balances[-1] == await core.balance(cust.customer_id)


async def test_resend_after_dropped_stream_applies_once(core: Core) -> None:
    cust = await core.register()  # welcome 300
    events = [
        envelope(
            i,
            commit=pb.CommitRequest(
                idempotency_key=f"DROP-{i}", draft=core.draft(phone_ref(cust), [line("L1", 100_000)])
            ),
        )
        for i in range(1, 6)
    ]
    call = core.stub.StreamEvents(timeout=DEADLINE_S)
    for ev in events:
        await call.write(pb.StreamEventsRequest(events=[ev]))
    first = await asyncio.wait_for(call.read(), DEADLINE_S)  # one ack seen, then the link drops
    assert [a.event_id for a in first.acks] == ["DROP-1"]
    call.cancel()

    acks = await exchange(core, events)  # the gateway resends every unacknowledged event (and more)
    assert [a.event_id for a in acks] == [ev.event_id for ev in events]
    assert all(a.WhichOneof("result") == "commit" for a in acks)
    assert acks[0].commit.replayed
    assert len({a.commit.operation_id for a in acks}) == 5
    assert await core.balance(cust.customer_id) == 300 + 5 * 30
    assert (await core.report()).receipts == 5


async def test_one_batch_of_many_registers_with_a_refund_of_another_registers_sale(core: Core) -> None:
    """Registers are applied side by side within a batch, each in its order; a refund is a
    barrier, so it finds the sale just before it in the same batch even on another register."""
    custs = [await core.register() for _ in range(3)]
    events: list[pb.EventEnvelope] = []
    for i in range(1, 13):
        reg = f"R{i % 3}"
        draft = core.draft(phone_ref(custs[i % 3]), [line("L1", 10_000 * i)])
        draft.register_id = reg
        events.append(pb.EventEnvelope(event_id=f"MR-{i}", register_id=reg, register_seq=i,
                                       commit=pb.CommitRequest(idempotency_key=f"MR-{i}", draft=draft)))
    refund = pb.EventEnvelope(event_id="MR-RF", register_id="R9", register_seq=1, refund=pb.RefundRequest(
        refund_key="MR-RF", sale=pb.SaleRef(sale_key="MR-12"), full=True))
    events.insert(12, refund)  # right after the sale it refunds (register R0), before more sales
    last_draft = core.draft(phone_ref(custs[1]), [line("L1", 100_000)])
    last = pb.CommitRequest(idempotency_key="MR-13", draft=last_draft)
    events.append(pb.EventEnvelope(event_id="MR-13", register_id="R1", register_seq=13, commit=last))
    acks = await exchange(core, events)
    assert [a.event_id for a in acks] == [e.event_id for e in events]
    assert [a.WhichOneof("result") for a in acks] == ["commit"] * 12 + ["refund", "commit"]
    assert acks[12].refund.money_refunded == 120_000
    for k in range(3):  # each register's balances grow in its send order
        mine = [a.commit.balance for a in acks
                if a.WhichOneof("result") == "commit" and a.register_id == f"R{k}"]
        assert mine == sorted(mine) and len(set(mine)) == len(mine)
    report = await core.report()
    assert (report.receipts, report.refunds, report.money_refunded) == (13, 1, 120_000)


async def test_refund_and_cancel_before_their_sale_wait_and_do_not_block_the_register(core: Core) -> None:
    """A refund or cancel naming a sale key the core has not seen is a retriable, *deferred*
    rejection (SALE_NOT_YET_KNOWN, metadata sale_key): the register's later events are applied;
    resent once the sale is there, it is applied."""
    cust = await core.register()  # welcome 300
    draft = core.draft(phone_ref(cust), [line("L1", 100_000), line("L2", 50_000)])
    early_refund = envelope(1, refund=pb.RefundRequest(
        refund_key="OO-R", sale=pb.SaleRef(sale_key="OO-S"),
        lines=[pb.RefundLine(line_id="L2", qty_milli=1000)]))
    early_cancel = envelope(2, cancel=pb.CancelRequest(cancel_key="OO-X", sale=pb.SaleRef(sale_key="OO-S2")))
    later = envelope(3, commit=pb.CommitRequest(
        idempotency_key="OO-OTHER", draft=core.draft(phone_ref(cust), [line("L1", 10_000)])))
    acks = await exchange(core, [early_refund, early_cancel, later])
    assert [a.WhichOneof("result") for a in acks] == ["rejected", "rejected", "commit"]
    for ack, key in zip(acks[:2], ("OO-S", "OO-S2"), strict=True):
        assert ack.rejected.reason == "SALE_NOT_YET_KNOWN"
        assert ack.rejected.retriable and ack.rejected.deferred
        assert ack.rejected.metadata["sale_key"] == key
    sale = envelope(4, commit=pb.CommitRequest(idempotency_key="OO-S", draft=draft))
    acks = await exchange(core, [sale, early_refund])
    assert [a.WhichOneof("result") for a in acks] == ["commit", "refund"]
    assert acks[1].refund.money_refunded == 50_000

