"""Stateful model test: outbox + sender against an in-process fake core with random faults.

Hypothesis drives appends (new and duplicate keys), partial delivery runs, restarts (outbox
closed and reopened, a new sender) and a fault plan per event: the stream fails before the core
applies it, fails after it is applied but before the ack, the ack never comes, the core rejects
it retriably (then accepts), or rejects it for good. Invariants:
- no key is ever applied twice at the core (it dedups by key; raw applications are counted);
- per register, the core's application order is a prefix of the append order without the
  permanently rejected events (and equals it once everything is delivered);
- at the end every appended key is delivered (applied once) or in the operator queue, and
  nothing is pending.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.outbox import Outbox
from gateway.sender import Sender
from tests.gateway.fake_core import ACK, Action, FakeCore, InProcClient
from tests.gateway.outbox_fixtures import sale

REGISTERS = ("A", "B", "C")
PLANS: dict[str, list[Action]] = {
    "ok": [ACK],
    "fail_before_apply": [Action("drop_before"), ACK],
    "fail_after_apply": [Action("drop_after"), ACK],
    "no_ack": [Action("noack"), ACK],
    "retriable_reject": [Action("retry_reject"), ACK],
    "reject": [Action("reject", reason="INSUFFICIENT_POINTS")],
}


class OutboxModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-model-"))
        self.plan: dict[str, list[Action]] = {}
        self.appended: dict[str, list[str]] = {r: [] for r in REGISTERS}
        self.to_reject: set[str] = set()
        self.counter = 0
        self.core = FakeCore(self._script)
        self.outbox = self.run(Outbox.open(self.dir / "o.db"))
        self.sender = self._new_sender()

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def _script(self, env: pb.EventEnvelope, attempt: int) -> Action:
        steps = self.plan.get(env.event_id, [ACK])
        return steps[min(attempt, len(steps)) - 1]

    def _new_sender(self) -> Sender:
        return Sender(self.outbox, InProcClient(self.core), window=8, batch=4, ack_timeout_s=0.05,
                      backoff_initial_s=0.001, backoff_max_s=0.005, idle_poll_s=0.01)

    @rule(register=st.sampled_from(REGISTERS), plan=st.sampled_from(sorted(PLANS)), n=st.integers(1, 4))
    def append(self, register: str, plan: str, n: int) -> None:
        for _ in range(n):
            self.counter += 1
            ev = sale(register, self.counter)
            self.plan[ev.key] = PLANS[plan]
            assert self.run(self.outbox.append(ev)) is True
            self.appended[register].append(ev.key)
            if plan == "reject":
                self.to_reject.add(ev.key)

    @precondition(lambda self: self.counter > 0)
    @rule(data=st.data())
    def append_duplicate(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, self.counter))
        reg = next(r for r in REGISTERS if sale(r, n).key in self.appended[r])
        assert self.run(self.outbox.append(sale(reg, n))) is False

    @rule(seconds=st.sampled_from([0.005, 0.02, 0.05]))
    def deliver_for_a_while(self, seconds: float) -> None:
        self.run(self.sender.drain(seconds))

    @rule()
    def restart(self) -> None:
        self.run(self.outbox.close())
        self.outbox = self.run(Outbox.open(self.dir / "o.db"))
        self.sender = self._new_sender()

    @invariant()
    def nothing_applied_twice(self) -> None:
        assert all(n == 1 for n in self.core.applications.values()), self.core.applications

    @invariant()
    def order_per_register_is_append_order(self) -> None:
        for reg in REGISTERS:
            want = [k for k in self.appended[reg] if k not in self.to_reject]
            got = self.core.order.get(reg, [])
            assert got == want[: len(got)], (reg, got, want)

    def teardown(self) -> None:
        try:
            assert self.run(self.sender.drain(20)), "not everything delivered"
            for reg in REGISTERS:
                want = [k for k in self.appended[reg] if k not in self.to_reject]
                assert self.core.order.get(reg, []) == want
            rejected = self.run(self.outbox.rejected())
            assert sorted(r.key for r in rejected) == sorted(self.to_reject)
            assert set(self.core.rejected) == self.to_reject
            stats = self.run(self.outbox.stats())
            assert stats.pending == 0 and stats.rejected == len(self.to_reject)
        finally:
            self.run(self.outbox.close())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


OutboxModel.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestOutboxModel = OutboxModel.TestCase
