"""StreamEvents keeps a register's order when one event is refused retriably mid-stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from simulators.core.service import LoyaltyCoreService


class _Scripted(LoyaltyCoreService):
    """apply_event refuses event "A2" retriably once; records what it applied."""

    def __init__(self) -> None:  # no Core needed: apply_event is replaced
        self.applied: list[str] = []

    async def apply_event(self, env: pb.EventEnvelope) -> pb.EventAck:
        ack = pb.EventAck(event_id=env.event_id, register_id=env.register_id)
        if env.event_id == "A2":
            ack.rejected.CopyFrom(pb.Rejection(reason="STORAGE_BUSY", retriable=True))
        else:
            self.applied.append(env.event_id)
            ack.commit.CopyFrom(pb.CommitResult(operation_id=env.event_id))
        return ack


async def _events(*ids: str) -> AsyncIterator[pb.EventEnvelope]:
    for event_id in ids:
        yield pb.EventEnvelope(event_id=event_id, register_id=event_id[0])


async def test_later_events_of_a_refused_register_are_not_applied() -> None:
    service = _Scripted()
    context: Any = None
    acks = [a async for a in service.StreamEvents(_events("A1", "B1", "A2", "A3", "B2", "A4"), context)]
    assert [a.event_id for a in acks] == ["A1", "B1", "A2", "A3", "B2", "A4"]
    outcome = {a.event_id: a.WhichOneof("result") for a in acks}
    assert outcome == {"A1": "commit", "B1": "commit", "A2": "rejected", "A3": "rejected",
                       "B2": "commit", "A4": "rejected"}
    assert all(a.rejected.retriable for a in acks if a.event_id in ("A3", "A4"))
    assert service.applied == ["A1", "B1", "B2"]  # register A stops at its refused event
