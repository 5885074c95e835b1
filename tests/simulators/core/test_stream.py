"""Acceptance: the StreamEvents delivery stream.

Every event is answered by exactly one EventAck (same event_id / register / seq) carrying the
result or a rejection with its §2.5 reason; events of one register are acknowledged in the
order sent; a business failure or bad input is a rejection, not the end of the stream; after a
reconnect, resending an already applied event is answered as a replay and changes nothing.
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


async def exchange(core: Core, events: Sequence[pb.EventEnvelope]) -> list[pb.EventAck]:
    """Open a stream, send ``events``, read one ack per event, close the stream."""
    call = core.stub.StreamEvents(timeout=DEADLINE_S)
    acks: list[pb.EventAck] = []
    try:
        for ev in events:
            await call.write(ev)
        for _ in events:
            ack = await asyncio.wait_for(call.read(), DEADLINE_S)
            assert ack is not grpc.aio.EOF, "stream ended before every event was acknowledged"
            acks.append(ack)
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

    acks = await exchange(core, [sale, greedy, invalid, second])
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
        await call.write(ev)
    first = await asyncio.wait_for(call.read(), DEADLINE_S)  # one ack seen, then the link drops
    assert first.event_id == "DROP-1"
    call.cancel()

    acks = await exchange(core, events)  # the gateway resends every unacknowledged event (and more)
    assert [a.event_id for a in acks] == [ev.event_id for ev in events]
    assert all(a.WhichOneof("result") == "commit" for a in acks)
    assert acks[0].commit.replayed
    assert len({a.commit.operation_id for a in acks}) == 5
    assert await core.balance(cust.customer_id) == 300 + 5 * 30
    assert (await core.report()).receipts == 5
