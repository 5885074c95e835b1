"""A scriptable fake of the core's ``StreamEvents`` for the sender tests.

:class:`FakeCore` holds the logic (dedup by key, per-register application order, scripted
faults); :func:`serve` runs it as a real ``grpc.aio`` server on 127.0.0.1 with a started
:class:`~gateway.core_client.CoreClient` pointed at it, and :class:`InProcClient` (a real
CoreClient whose streams are in-process :class:`InProcCall` objects) drives it with no sockets,
for the fast stateful and the step-by-step tests.

The stream carries StreamEventsRequest messages; every batch is answered by one StreamEventsResponse
with one ack
per event, in order (the proto contract), unless a fault stops it. Faults a script returns per
envelope (``script(env, attempt) -> Action``): ``ack`` apply and answer; ``reject`` permanent
rejection; ``retry_reject`` retriable rejection, after which the rest of that register on this
stream (in this batch and later ones) is refused retriably too (the proto contract: a
register's events are applied in the order sent); ``drop_before`` end the stream with
UNAVAILABLE without applying it or the rest of its batch; ``drop_after`` apply it, then end
the stream before the batch is answered (the rest of the batch unapplied); ``delay`` apply,
and wait before answering the batch; ``noack`` apply it and never answer (the rest of the
batch unapplied). A refund or cancel whose sale was not applied is refused as the reference
core does: retriable and deferred (SALE_NOT_YET_KNOWN), without blocking its register.
:attr:`FakeCore.batch_sizes` records the size of every batch received,
including those a silent (noack) stream never processes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from gateway.breaker import CircuitBreaker
from gateway.core_client import CoreClient, CoreTarget, StreamCall
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.metrics import Metrics


@dataclass(frozen=True)
class Action:
    kind: str = "ack"
    delay: float = 0.0
    reason: str = "INSUFFICIENT_POINTS"


ACK = Action()
Script = Callable[[pb.EventEnvelope, int], Action]


@dataclass
class StreamState:
    blocked: set[str] = field(default_factory=set)


class FakeCore:
    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda env, attempt: ACK)
        self.results: dict[str, pb.EventAck] = {}
        self.order: dict[str, list[str]] = defaultdict(list)  # register -> keys in application order
        self.applications: Counter[str] = Counter()  # raw applications of a new key (must stay 1)
        self.rejected: dict[str, str] = {}  # key -> reason (permanent)
        self.seen: Counter[str] = Counter()  # envelopes received per key
        self.received = 0
        self.streams = 0
        self.batch_sizes: list[int] = []
        self._ops = itertools.count(1)

    def begin_stream(self) -> StreamState:
        self.streams += 1
        return StreamState()

    def process(self, ss: StreamState, env: pb.EventEnvelope) -> tuple[Action, pb.EventAck | None]:
        """Apply (or not) one envelope; returns the action and the ack to send (None: no ack)."""
        key, reg = env.event_id, env.register_id
        self.seen[key] += 1
        self.received += 1
        head = pb.EventAck(event_id=key, register_id=reg, register_seq=env.register_seq)
        if reg in ss.blocked:
            refused = pb.Rejection(reason="BUSY", message="earlier event refused", retriable=True)
            head.rejected.CopyFrom(refused)
            return ACK, head
        action = self.script(env, self.seen[key])
        if action.kind == "drop_before":
            return action, None
        if key in self.results:  # a replay answers the same result
            ack = pb.EventAck()
            ack.CopyFrom(self.results[key])
            field_name = ack.WhichOneof("result")
            getattr(ack, field_name).replayed = True
            return (action if action.kind in ("drop_after", "delay", "noack") else ACK), ack
        if key in self.rejected:
            head.rejected.CopyFrom(pb.Rejection(reason=self.rejected[key], message="again", retriable=False))
            return ACK, head
        if action.kind == "retry_reject":
            ss.blocked.add(reg)
            head.rejected.CopyFrom(pb.Rejection(reason="BUSY", message="try again", retriable=True))
            return action, head
        body = env.WhichOneof("body")
        sale_key = env.refund.sale.sale_key if body == "refund" else env.cancel.sale.sale_key
        if body != "commit" and sale_key and sale_key not in self.results and action.kind != "reject":
            # as the reference core: its sale is not here yet, this one waits (the register goes on)
            head.rejected.CopyFrom(pb.Rejection(reason="SALE_NOT_YET_KNOWN", message="sale not known yet",
                                                metadata={"sale_key": sale_key}, retriable=True,
                                                deferred=True))
            return ACK, head
        if action.kind == "reject":
            reason = action.reason
            self.rejected[key] = reason
            head.rejected.CopyFrom(pb.Rejection(reason=reason, message="refused", retriable=False))
            return ACK, head
        op = f"op-{next(self._ops)}"
        if body == "commit":
            head.commit.CopyFrom(pb.CommitResponse(operation_id=op, balance=100))
        elif body == "refund":
            head.refund.CopyFrom(pb.RefundResponse(operation_id=op, refund_id=op))
        else:
            head.cancel.CopyFrom(pb.CancelResponse(operation_id=op))
        self.applications[key] += 1
        self.order[reg].append(key)
        self.results[key] = head
        return action, head

    def process_batch(self, ss: StreamState,
                      batch: pb.StreamEventsRequest) -> tuple[Action, pb.StreamEventsResponse | None]:
        """Process a batch's envelopes in order until a fault stops it. Returns the action that
        decides the batch's fate (ack, delay with the summed delays, or the stopping fault) and
        the StreamEventsResponse to send (None: the stream breaks or stays silent)."""
        reply = pb.StreamEventsResponse()
        delay = 0.0
        for env in batch.events:
            action, ack = self.process(ss, env)
            if action.kind in ("drop_before", "drop_after", "noack"):
                return action, None
            if action.kind == "delay":
                delay += action.delay
            assert ack is not None
            reply.acks.append(ack)
        return (Action("delay", delay) if delay else ACK), reply


class _Servicer(pb_grpc.LoyaltyCoreServiceServicer):
    def __init__(self, core: FakeCore) -> None:
        self.core = core

    async def StreamEvents(
        self, request_iterator: AsyncIterator[pb.StreamEventsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        ss = self.core.begin_stream()
        async for batch in request_iterator:
            self.core.batch_sizes.append(len(batch.events))
            action, reply = self.core.process_batch(ss, batch)
            if action.kind in ("drop_before", "drop_after"):
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"fault: {action.kind}")
            if action.kind == "delay":
                await asyncio.sleep(action.delay)
            if action.kind == "noack":
                await asyncio.sleep(3600)
            assert reply is not None
            yield reply


def quick_breaker() -> CircuitBreaker:
    """The production threshold with a short reset, so a test that opens it waits little."""
    return CircuitBreaker(5, 0.2)


@dataclass
class Served:
    server: grpc.aio.Server
    port: int
    channel: grpc.aio.Channel
    client: CoreClient  # started, on its own channel to the server

    @property
    def stub(self) -> Any:
        return pb_grpc.LoyaltyCoreServiceStub(self.channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self.client.close()
        await self.channel.close()
        await self.server.stop(0)


async def start_server(core: FakeCore, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    pb_grpc.add_LoyaltyCoreServiceServicer_to_server(_Servicer(core), server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


async def started_client(port: int, metrics: Metrics | None = None) -> CoreClient:
    """A started CoreClient for 127.0.0.1:``port`` with :func:`quick_breaker`."""
    client = CoreClient(CoreTarget(f"127.0.0.1:{port}"), metrics=metrics, breaker=quick_breaker())
    await client.start()
    return client


async def serve(core: FakeCore, metrics: Metrics | None = None) -> Served:
    server, port = await start_server(core)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Served(server, port, channel, await started_client(port, metrics))


# ---------------------------------------------------------------- in-process (no sockets)

_ERR = object()


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class InProcCall:
    def __init__(self, core: FakeCore) -> None:
        self.core = core
        self.ss = core.begin_stream()
        self.acks: asyncio.Queue[Any] = asyncio.Queue()
        self.broken = False
        self.silent = False

    async def write(self, data: bytes) -> None:  # a serialized StreamEventsRequest, as on the wire
        if self.broken:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "stream is gone")
        batch = pb.StreamEventsRequest.FromString(data)
        self.core.batch_sizes.append(len(batch.events))
        await asyncio.sleep(0)
        if self.silent:  # like the server's handler stuck on a noack: later batches are not read
            return
        action, reply = self.core.process_batch(self.ss, batch)
        if action.kind in ("drop_before", "drop_after"):
            self.broken = True
            self.acks.put_nowait(_ERR)
            return
        if action.kind == "noack":
            self.silent = True
            return
        self.acks.put_nowait(reply)

    async def read(self) -> Any:
        item = await self.acks.get()
        if item is _ERR:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "fault: dropped")
        return item

    def cancel(self) -> bool:
        self.broken = True
        return True


class InProcStub:
    def __init__(self, core: FakeCore) -> None:
        self.core = core

    def StreamEvents(self, **_: Any) -> InProcCall:
        return InProcCall(self.core)


class InProcClient(CoreClient):
    """A CoreClient (real breaker, metrics and status table) whose ``StreamEvents`` calls are
    ``call(core)`` in-process (:class:`InProcCall` unless a test brings a broken one). Needs no
    ``start()``; only the event stream is in-process."""

    def __init__(self, core: FakeCore, *, call: Callable[[FakeCore], InProcCall] = InProcCall,
                 metrics: Metrics | None = None, breaker: CircuitBreaker | None = None) -> None:
        super().__init__(CoreTarget("in-process"), metrics=metrics, breaker=breaker or quick_breaker())
        self.core = core
        self.call = call  # a test may swap it (the core "comes back")

    def _events_call(self) -> StreamCall:
        return self.call(self.core)


async def ack_all(request_iterator: Any, delivered: list[str]) -> AsyncIterator[pb.StreamEventsResponse]:
    """A StreamEvents body for simple stub cores: every event is committed, recorded in order."""
    async for batch in request_iterator:
        reply = pb.StreamEventsResponse()
        for envelope in batch.events:
            delivered.append(envelope.event_id)
            reply.acks.append(pb.EventAck(event_id=envelope.event_id, register_id=envelope.register_id,
                                          register_seq=envelope.register_seq, commit=pb.CommitResponse()))
        yield reply
