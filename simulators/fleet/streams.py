"""Many lightweight gateways' delivery streams against a core or a cluster of core replicas.

A :class:`StreamGateway` is what a real gateway's sender does on the wire, without the outbox:
one channel (balanced ``round_robin`` over every address given), one long-lived
``StreamEvents`` call naming its gateway (``posgw-gateway`` metadata, as the core's register
fence expects), ``tills`` registers with gap-free sequence numbers. Each round it appends one
sale per register, sends everything unacknowledged as one request message and waits for the
answer. Invariants, the same as the gateway's:

- an event leaves ``pending`` only when the core acknowledged it (a result) or refused it for
  good (a final rejection, which a real gateway puts in its operator queue);
- a retriable refusal keeps that event and every later event of its register, in order, and
  reopens the stream (the core refuses the rest of that register's events on the stream that
  refused one, so resending on it would be refused forever); a broken stream (a replica died,
  no answer within ``ACK_TIMEOUT_S``) is reopened the same way and everything pending is resent
  from its first event: the idempotency keys make a resend a replay, so nothing is applied
  twice;
- after ``stop_at`` no new sales are made; what is pending is delivered until ``drain_s``.

:func:`run_fleet` runs N of them in this process (asyncio; 200 gateways are a few percent of a
core) and returns the :class:`Totals` and the gateways, whose ``acked_keys`` and ``next_seq``
are the ground truth a caller compares with the core's database (``bench/core_soak.py``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.core_client import ROUND_ROBIN
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc

ACK_TIMEOUT_S = 20.0  # no answer within this: the stream is taken as broken and reopened
RECONNECT_PAUSE_S = 0.3
RETRY_PAUSE_S = 0.2  # after a retriable refusal, before resending from that event
STAFF = pb.Staff(store_id="S1", terminal_id="T1", cashier_id="C1", cashier_name="Ольга")


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts


def sale_event(register: str, seq: int, phone: str, amount: int, key_prefix: str = "EV") -> pb.EventEnvelope:
    """A register's ``seq``-th event: a sale of ``amount`` kopecks to the customer with ``phone``,
    keyed ``<key_prefix>-<register>-<seq>`` (``<register>-<seq>`` with no prefix)."""
    key = f"{key_prefix}-{register}-{seq}" if key_prefix else f"{register}-{seq}"
    draft = pb.ReceiptDraft(
        customer=pb.CustomerRef(phone=phone),
        lines=[pb.Line(line_id="L1", sku="SKU1", name="goods", qty_milli=1000, amount=amount)],
        occurred_at=now_ts(), staff=STAFF, register_id=register, receipt_number=key, total=amount,
        channel="test",
    )
    return pb.EventEnvelope(event_id=key, register_id=register, register_seq=seq,
                            commit=pb.CommitRequest(idempotency_key=key, draft=draft))


MAX_CUSTOMERS = 1_000_000  # customer_phone's numbering: +79992 and six digits


def customer_phone(i: int) -> str:
    """The fleet's ``i``-th customer (registered by the caller before the run), a valid Russian
    mobile for every ``0 <= i < MAX_CUSTOMERS``."""
    if not 0 <= i < MAX_CUSTOMERS:
        raise ValueError(f"customer number {i} outside 0..{MAX_CUSTOMERS - 1}")
    return f"+79992{i:06d}"


class RetryOnNewStream(Exception):
    """The core refused an event retriably: its register is blocked on this stream."""


@dataclass
class Totals:
    """What the whole fleet saw; ``accrued_by_key`` is the points each acknowledged sale earned
    (a replay's ack carries the stored answer, so a key is counted once)."""

    sent: int = 0
    acked: int = 0
    reconnects: int = 0
    retriable: int = 0
    final_refusals: list[str] = field(default_factory=list)
    accrued_by_key: dict[str, int] = field(default_factory=dict)


@dataclass
class StreamGateway:
    """One simulated gateway (see the module docstring); its registers are
    ``<key_prefix>-G<index>T<till>`` and an event's key is ``<register>-<seq>`` (a run with another
    prefix starts fresh registers, so runs against one core never collide)."""

    index: int
    tills: int
    customers: int
    key_prefix: str = "FLEET"
    rng: random.Random = field(default_factory=random.Random)
    next_seq: dict[str, int] = field(default_factory=dict)
    pending: list[pb.EventEnvelope] = field(default_factory=list)  # unacknowledged, in order
    acked_keys: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.key_prefix.lower()}-gw-{self.index}"

    def new_round(self) -> None:
        for t in range(self.tills):
            reg = f"{self.key_prefix}-G{self.index}T{t}"
            seq = self.next_seq.get(reg, 0) + 1
            self.next_seq[reg] = seq
            phone = customer_phone(self.rng.randrange(self.customers))
            self.pending.append(sale_event(reg, seq, phone, self.rng.randrange(1_000, 500_000), ""))

    async def deliver(self, call: Any, totals: Totals) -> None:
        """Send everything pending on ``call`` until it is all answered; raises when the stream
        breaks or an event was refused retriably (:class:`RetryOnNewStream`): the caller reopens
        the stream and calls again, pending kept."""
        while self.pending:
            batch = list(self.pending)
            await call.write(pb.StreamEventsRequest(events=batch))
            totals.sent += len(batch)
            reply = await asyncio.wait_for(call.read(), ACK_TIMEOUT_S)
            if reply is grpc.aio.EOF:  # type: ignore[attr-defined]
                raise ConnectionError("the core ended the stream")
            keep: list[pb.EventEnvelope] = []
            retry_regs: set[str] = set()
            for env, ack in zip(batch, reply.acks, strict=True):
                if env.register_id in retry_regs:
                    keep.append(env)
                elif ack.WhichOneof("result") == "commit":
                    totals.acked += 1
                    self.acked_keys.append(env.event_id)
                    totals.accrued_by_key[env.event_id] = ack.commit.calculation.points_to_accrue
                elif ack.rejected.retriable:
                    totals.retriable += 1
                    retry_regs.add(env.register_id)
                    keep.append(env)
                else:
                    totals.final_refusals.append(f"{env.event_id}: {ack.rejected.reason}")
            self.pending = keep
            if keep:
                raise RetryOnNewStream(f"{len(keep)} events refused retriably or behind one")

    async def run(self, target: str, stop_at: float, drain_s: float, pause_s: tuple[float, float],
                  totals: Totals) -> None:
        """Sell rounds until ``stop_at`` (monotonic), then deliver what is pending for up to
        ``drain_s`` more."""
        options = [("grpc.service_config", ROUND_ROBIN)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
            drain_until = stop_at + drain_s
            call: Any = None
            while time.monotonic() < stop_at or (self.pending and time.monotonic() < drain_until):
                if time.monotonic() < stop_at:
                    self.new_round()
                if call is None:
                    call = stub.StreamEvents(metadata=(("posgw-gateway", self.name),))
                try:
                    await self.deliver(call, totals)
                except RetryOnNewStream:
                    call.cancel()
                    call = None
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                except (TimeoutError, grpc.aio.AioRpcError, ConnectionError, asyncio.InvalidStateError):
                    totals.reconnects += 1
                    call.cancel()
                    call = None
                    await asyncio.sleep(RECONNECT_PAUSE_S)
                    continue
                if time.monotonic() < stop_at:
                    await asyncio.sleep(self.rng.uniform(*pause_s))
            if call is not None:
                call.cancel()


def target_of(addresses: Sequence[str]) -> str:
    """One gRPC target for every address: ``ipv4:a,b`` (several literal host:port) or the one name
    (a DNS name with several records is balanced by its resolver)."""
    if len(addresses) == 1:
        return addresses[0]
    return "ipv4:" + ",".join(addresses)


async def register_customers(address: str, customers: int, timeout_s: float = 30.0) -> None:
    """Register the fleet's customers at the core (a known phone is returned as is)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        for c in range(customers):
            req = pb.RegisterCustomerRequest(phone=customer_phone(c), name="Fleet", channel="cashier",
                                             staff=STAFF, occurred_at=now_ts())
            await stub.RegisterCustomer(req, timeout=timeout_s)


async def run_fleet(addresses: Sequence[str], *, gateways: int, tills: int, seconds: float,
                    customers: int, pause_s: tuple[float, float] = (0.5, 1.5), drain_s: float = 120.0,
                    key_prefix: str = "FLEET", first_index: int = 0,
                    seed: int | None = None) -> tuple[list[StreamGateway], Totals]:
    """Run ``gateways`` stream gateways (indices from ``first_index``) for ``seconds``, then let
    them deliver what they hold; see the module docstring."""
    base = random.Random(seed)
    fleet = [StreamGateway(first_index + g, tills, customers, key_prefix, random.Random(base.random()))
             for g in range(gateways)]
    totals = Totals()
    stop_at = time.monotonic() + seconds
    target = target_of(addresses)
    await asyncio.gather(*(gw.run(target, stop_at, drain_s, pause_s, totals) for gw in fleet))
    return fleet, totals
