"""A till's copy that reaches the outbox while its event is on the way to the core (gateway.sender
with gateway.outbox): what the core applied is what was sent, and the copy's additions reach it
exactly once afterwards (a correction), or the operator queue; never lost, never doubled.

The core here is :class:`tests.gateway.fake_core.FakeCore` taught two things of the reference
core: a known key with other content is RECEIPT_CONFLICT (nothing changes), and AttachCustomer
(the correction) attaches a customer to a sale it has, once per correction key. The stream
holds the core's acks back until the test lets them go, so "the copy arrives while the event is
in flight" is a fixed order of steps, not a timing."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

import gateway.outbox as outbox_module
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.payload import event_to_json
from gateway.receipt import CustomerId, Event, IdKind
from gateway.sender import Sender
from tests.gateway.fake_core import ACK, Action, FakeCore, InProcCall, InProcClient, StreamState
from tests.gateway.outbox_fixtures import sale

FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "idle_poll_s": 0.05}
PHONE = "+79160000101"


class ContentCore(FakeCore):
    """FakeCore that keeps what it applied: a commit's draft per key (a known key with other
    content: RECEIPT_CONFLICT, as the reference core), and the customers attached per sale."""

    def __init__(self) -> None:
        super().__init__()
        self.drafts: dict[str, bytes] = {}  # sale key -> the applied draft (serialized)
        self.attached: dict[str, list[str]] = defaultdict(list)  # sale key -> phones attached, in order

    def process(self, ss: StreamState, env: pb.EventEnvelope) -> tuple[Action, pb.EventAck | None]:
        key, body = env.event_id, env.WhichOneof("body")
        head = pb.EventAck(event_id=key, register_id=env.register_id, register_seq=env.register_seq)
        draft = env.commit.draft.SerializeToString() if body == "commit" else b""
        if key in self.drafts and draft != self.drafts[key]:
            self.seen[key] += 1
            head.rejected.CopyFrom(pb.Rejection(reason="RECEIPT_CONFLICT", message="other content"))
            return ACK, head
        if body == "attach_customer" and key not in self.results:
            self.seen[key] += 1
            req = env.attach_customer
            sale_key = req.sale.sale_key
            if sale_key not in self.results:
                head.rejected.CopyFrom(pb.Rejection(reason="SALE_NOT_YET_KNOWN", message="not yet",
                                                    retriable=True, deferred=True,
                                                    metadata={"sale_key": sale_key}))
                return ACK, head
            self.attached[sale_key].append(req.draft.customer.phone)
            self.applications[key] += 1
            self.order[env.register_id].append(key)
            head.attach_customer.CopyFrom(pb.AttachCustomerResult(operation_id="op-attach"))
            self.results[key] = head
            return ACK, head
        action, ack = super().process(ss, env)
        if body == "commit" and key not in self.drafts and ack is not None and ack.HasField("commit"):
            self.drafts[key] = draft
        return action, ack


class Gate:
    """Holds the stream's first answer (an ack, or the stream breaking: the core has applied
    the batch either way) until :meth:`release`; later answers pass."""

    def __init__(self) -> None:
        self.held = asyncio.Event()  # an ack is being held
        self.open = asyncio.Event()

    def release(self) -> None:
        self.open.set()

    def call(self, core: FakeCore) -> InProcCall:
        gate = self

        class HeldCall(InProcCall):
            async def read(self) -> object:
                if not gate.open.is_set():
                    self.acks.put_nowait(await self.acks.get())  # an answer is there (the only one)
                    gate.held.set()
                    await gate.open.wait()
                return await super().read()

        return HeldCall(core)


@asynccontextmanager
async def running(sender: Sender) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def copies() -> tuple[Event, Event]:
    """The cloud's copy of a receipt (no customer) and the till's (the customer named)."""
    cloud = sale("R1", 1, driver="evotor")
    assert cloud.receipt is not None
    till = replace(cloud, receipt=replace(cloud.receipt, customer=CustomerId(IdKind.PHONE, PHONE)))
    return cloud, till


async def test_a_copy_merged_while_the_event_is_in_flight_reaches_the_core_once(tmp_path: Path) -> None:
    """The race: the cloud copy is sent and applied, its ack is held, the till copy (adding the
    customer) merges into the still pending row, then the ack for the OLD content arrives. The
    core must end with the sale as sent and the customer attached exactly once."""
    cloud, till = copies()
    core, gate = ContentCore(), Gate()
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        sender = Sender(ob, InProcClient(core, call=gate.call), **FAST)
        assert await ob.append(cloud)
        async with running(sender):
            await asyncio.wait_for(gate.held.wait(), 10)  # applied by the core, ack not read yet
            assert core.applications[cloud.key] == 1
            assert await ob.append(till) is False  # merged into the pending row (in flight)
            gate.release()
            assert await sender.drain(10)
        correction = f"{cloud.key}:correction:1"
        assert core.attached == {cloud.key: [PHONE]}  # the customer reached the core, once
        assert dict(core.applications) == {cloud.key: 1, correction: 1}
        assert core.order["R1"] == [cloud.key, correction]
        assert await ob.rejected() == []
        rows = {r.key: r for r in await ob.recent(10)}
        assert rows[cloud.key].state == "delivered" and rows[correction].state == "delivered"
        # the delivered row holds what the core applied: the cloud copy, not the merge
        assert rows[cloud.key].payload == event_to_json(cloud)
        # the till copy once more: the correction is already there, nothing new is sent
        assert await ob.append(till) is False
        assert await ob.next_batch(10) == []
    finally:
        await ob.close()


async def test_a_copy_merged_while_the_core_is_away_after_applying_is_sent_as_a_correction(
        tmp_path: Path) -> None:
    """The stream breaks after the core applied the cloud copy, before its ack; the till copy
    merges into the pending row during the outage. The resend carries what was sent (the core
    replays it; the merged content under the same key would be RECEIPT_CONFLICT there), and the
    customer follows as the correction, once."""
    cloud, till = copies()
    core, gate = ContentCore(), Gate()
    core.script = lambda env, attempt: Action("drop_after") if attempt == 1 else ACK
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        sender = Sender(ob, InProcClient(core, call=gate.call), **FAST)
        assert await ob.append(cloud)
        async with running(sender):
            await asyncio.wait_for(gate.held.wait(), 10)  # applied; the stream is about to fail
            assert await ob.append(till) is False  # merged into the pending row
            [pending] = await ob.next_batch(10)
            assert pending.event.receipt is not None and pending.event.receipt.customer is not None
            gate.release()
            assert await sender.drain(10)
        correction = f"{cloud.key}:correction:1"
        assert core.streams >= 2 and core.seen[cloud.key] == 2  # sent again after the failure
        assert core.attached == {cloud.key: [PHONE]}
        assert dict(core.applications) == {cloud.key: 1, correction: 1}
        assert await ob.rejected() == []
        rows = {r.key: r for r in await ob.recent(10)}
        assert rows[cloud.key].payload == event_to_json(cloud) and rows[correction].state == "delivered"
    finally:
        await ob.close()


async def test_a_copy_merged_while_the_core_refuses_the_event_is_what_a_retry_sends(tmp_path: Path) -> None:
    """The core refuses the cloud copy for good (its ack held), the till copy merges into the
    row meanwhile: the row goes to the operator queue with the merge, saying so; the operator's
    retry sends the merged version, which the core applies once (it never applied the key)."""
    cloud, till = copies()
    core, gate = ContentCore(), Gate()
    core.script = lambda env, attempt: Action("reject", reason="STORE_CLOSED") if attempt == 1 else ACK
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        sender = Sender(ob, InProcClient(core, call=gate.call), **FAST)
        assert await ob.append(cloud)
        async with running(sender):
            await asyncio.wait_for(gate.held.wait(), 10)  # refused; the ack is held
            assert await ob.append(till) is False
            gate.release()
            for _ in range(500):
                if await ob.rejected():
                    break
                await asyncio.sleep(0.01)
        [queued] = await ob.rejected()
        assert queued.reason == "STORE_CLOSED" and queued.payload == event_to_json(till)
        assert queued.last_error.startswith("a later copy was merged into this event while the core refused")
        assert f"customer=phone:{PHONE}" in queued.last_error
        core.rejected.clear()  # the shop is open again
        assert await ob.retry(queued.id)
        assert await sender.drain(10)
        merged = pb.EventEnvelope.FromString(queued.envelope).commit.draft
        assert merged.customer.phone == PHONE and core.drafts[cloud.key] == merged.SerializeToString()
        assert dict(core.applications) == {cloud.key: 1} and core.attached == {}
    finally:
        await ob.close()


async def test_a_copy_merged_in_flight_is_stored_at_delivery_even_past_the_conflict_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The till's copy (customer and points spent) merges into the pending row while the cloud
    copy is in flight: the till is told "stored". At delivery it is a conflict (points cannot be
    spent after delivery) while the key already has MAX_OPEN_CONFLICTS copies queued: it is stored
    all the same (the cap refuses only copies that can still be refused), never dropped."""
    monkeypatch.setattr(outbox_module, "MAX_OPEN_CONFLICTS", 1)
    cloud, till = copies()
    assert cloud.receipt is not None and till.receipt is not None
    greedy = replace(till, receipt=replace(till.receipt, redeem_points=50))
    reused = sale("R1", 1, driver="evotor", amount=777)  # the key reused for other goods
    assert reused.key == cloud.key
    m = Metrics()
    core, gate = ContentCore(), Gate()
    ob = await Outbox.open(tmp_path / "o.db", metrics=m)
    try:
        sender = Sender(ob, InProcClient(core, call=gate.call), **FAST)
        assert await ob.append(cloud)
        assert await ob.append(reused) is False  # other goods: conflict 1, the cap is reached
        async with running(sender):
            await asyncio.wait_for(gate.held.wait(), 10)  # applied by the core, ack held
            assert await ob.append(greedy) is False  # merged into the pending row: "stored"
            gate.release()
            assert await sender.drain(10)
        assert dict(core.applications) == {cloud.key: 1} and core.attached == {}
        rows = {r.key: r for r in await ob.recent(10)}
        assert rows[cloud.key].state == "delivered" and rows[cloud.key].payload == event_to_json(cloud)
        queued = {r.key: r for r in await ob.rejected()}
        assert sorted(queued) == [f"{cloud.key}:conflict:1", f"{cloud.key}:conflict:2"]
        kept = queued[f"{cloud.key}:conflict:2"]
        assert kept.reason == "RECEIPT_CONFLICT" and kept.payload == event_to_json(greedy)
        assert "spends points" in kept.last_error
        assert m.registry.get_sample_value("posgw_outbox_events_total", {"outcome": "refused"}) is None
        assert not m.alarms
    finally:
        await ob.close()


async def test_a_resend_refused_retriably_keeps_what_was_sent_before(tmp_path: Path) -> None:
    """The core applied e1 and e2, the stream broke before their acks; the till's copy (adding
    the customer) merged into e2 meanwhile. On the next stream the core refuses e1's resend
    retriably before looking it up (its storage busy), so e2 comes back refused too: neither
    refusal says whether the first send was applied. The sender keeps the bytes it sent first:
    the third stream resends e2 as the core applied it (a replay), and the customer follows as
    the correction, once; nothing goes to the operator queue as RECEIPT_CONFLICT."""
    e1 = sale("R1", 1, driver="evotor")
    e2 = sale("R1", 2, driver="evotor")
    assert e2.receipt is not None
    till2 = replace(e2, receipt=replace(e2.receipt, customer=CustomerId(IdKind.PHONE, PHONE)))

    class BusyCore(ContentCore):
        """Refuses e1's first resend retriably before looking it up (storage busy)."""

        def process(self, ss: StreamState, env: pb.EventEnvelope) -> tuple[Action, pb.EventAck | None]:
            if env.event_id == e1.key and self.seen[e1.key] == 1:
                self.seen[e1.key] += 1
                ss.blocked.add(env.register_id)  # the register's later events: refused unapplied
                head = pb.EventAck(event_id=env.event_id, register_id=env.register_id,
                                   register_seq=env.register_seq)
                head.rejected.CopyFrom(pb.Rejection(reason="STORAGE_BUSY", message="busy", retriable=True))
                return ACK, head
            return super().process(ss, env)

    core, gate = BusyCore(), Gate()
    # both applied, then the stream breaks before their acks
    core.script = lambda env, attempt: Action("drop_after") if (env.event_id, attempt) == (e2.key, 1) else ACK
    ob = await Outbox.open(tmp_path / "o.db")
    try:
        sender = Sender(ob, InProcClient(core, call=gate.call), **FAST)
        assert await ob.append(e1) and await ob.append(e2)
        async with running(sender):
            await asyncio.wait_for(gate.held.wait(), 10)  # both applied; the stream is about to fail
            assert core.applications[e1.key] == 1 and core.applications[e2.key] == 1
            assert await ob.append(till2) is False  # merged into the pending e2
            gate.release()
            assert await sender.drain(10)
        correction = f"{e2.key}:correction:1"
        assert core.streams >= 3 and core.seen[e2.key] >= 3  # refused once on the second stream
        assert await ob.rejected() == []
        assert core.attached == {e2.key: [PHONE]}
        assert dict(core.applications) == {e1.key: 1, e2.key: 1, correction: 1}
        rows = {r.key: r for r in await ob.recent(10)}
        assert rows[e2.key].payload == event_to_json(e2) and rows[correction].state == "delivered"
    finally:
        await ob.close()
