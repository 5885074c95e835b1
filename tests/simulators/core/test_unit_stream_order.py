"""StreamEvents keeps a register's order when one event is refused retriably mid-batch or
mid-stream, answers each batch with one ack per event in order, and runs a refund / cancel
only after everything before it in the batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from simulators.core.service import LoyaltyCoreService


class _Scripted(LoyaltyCoreService):
    """apply_event refuses event "A2" retriably; records what it applied, in application order."""

    def __init__(self) -> None:  # no Core needed: apply_event is replaced
        self.applied: list[str] = []
        self.running = 0
        self.max_running = 0

    async def apply_event(self, env: pb.EventEnvelope) -> pb.EventAck:
        ack = pb.EventAck(event_id=env.event_id, register_id=env.register_id)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        await asyncio.sleep(0)  # let other registers' chains run in between
        self.running -= 1
        if env.event_id == "A2":
            ack.rejected.CopyFrom(pb.Rejection(reason="STORAGE_BUSY", retriable=True))
        else:
            self.applied.append(env.event_id)
            ack.commit.CopyFrom(pb.CommitResponse(operation_id=env.event_id))
        return ack


def _env(event_id: str) -> pb.EventEnvelope:
    if event_id.startswith("X"):  # a refund: a barrier
        return pb.EventEnvelope(event_id=event_id, register_id=event_id[1],
                                refund=pb.RefundRequest(refund_key=event_id))
    return pb.EventEnvelope(event_id=event_id, register_id=event_id[0],
                            commit=pb.CommitRequest(idempotency_key=event_id))


async def _batches(*batches: tuple[str, ...]) -> AsyncIterator[pb.StreamEventsRequest]:
    for ids in batches:
        yield pb.StreamEventsRequest(events=[_env(i) for i in ids])


async def _acks(service: _Scripted, *batches: tuple[str, ...]) -> list[list[pb.EventAck]]:
    context: Any = None
    return [list(b.acks) async for b in service.StreamEvents(_batches(*batches), context)]


async def test_later_events_of_a_refused_register_are_not_applied_within_and_across_batches() -> None:
    service = _Scripted()
    replies = await _acks(service, ("A1", "B1", "A2", "A3", "B2"), ("A4", "B3", "C1"))
    assert [[a.event_id for a in r] for r in replies] == [["A1", "B1", "A2", "A3", "B2"], ["A4", "B3", "C1"]]
    outcome = {a.event_id: a.WhichOneof("result") for r in replies for a in r}
    assert outcome == {"A1": "commit", "B1": "commit", "A2": "rejected", "A3": "rejected",
                       "B2": "commit", "A4": "rejected", "B3": "commit", "C1": "commit"}
    refused = [a for r in replies for a in r if a.event_id in ("A3", "A4")]
    assert all(a.rejected.retriable and a.rejected.reason == "PRECEDING_EVENT_RETRY" for a in refused)
    assert [x for x in service.applied if x[0] == "A"] == ["A1"]  # register A stops at its refused event
    assert [x for x in service.applied if x[0] == "B"] == ["B1", "B2", "B3"]
    assert service.max_running >= 2  # registers of one batch are applied side by side


async def test_a_refund_waits_for_everything_before_it_in_the_batch() -> None:
    service = _Scripted()
    (reply,) = await _acks(service, ("A1", "B1", "B2", "B3", "XA", "B4", "C1"))
    assert [a.event_id for a in reply] == ["A1", "B1", "B2", "B3", "XA", "B4", "C1"]
    at = service.applied.index("XA")
    assert set(service.applied[:at]) == {"A1", "B1", "B2", "B3"}
    assert set(service.applied[at + 1:]) == {"B4", "C1"}


async def test_an_empty_batch_gets_an_empty_answer() -> None:
    assert await _acks(_Scripted(), ()) == [[]]


class _Deferring(_Scripted):
    """apply_event defers refund "XA" (its sale is not known yet)."""

    async def apply_event(self, env: pb.EventEnvelope) -> pb.EventAck:
        if env.event_id != "XA":
            return await super().apply_event(env)
        return pb.EventAck(event_id=env.event_id, register_id=env.register_id, rejected=pb.Rejection(
            reason="SALE_NOT_YET_KNOWN", retriable=True, deferred=True, metadata={"sale_key": "S"}))


async def test_a_deferred_rejection_does_not_refuse_the_registers_later_events() -> None:
    service = _Deferring()
    replies = await _acks(service, ("A1", "XA", "A3"), ("A4",))
    outcome = {a.event_id: a.WhichOneof("result") for r in replies for a in r}
    assert outcome == {"A1": "commit", "XA": "rejected", "A3": "commit", "A4": "commit"}
    assert service.applied == ["A1", "A3", "A4"]
