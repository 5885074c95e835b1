"""The gRPC face of the reference core: ``loyalty.v1.LoyaltyCoreService`` on ``grpc.aio``.

Thin on purpose: every RPC that touches the database runs one ledger function in a worker
thread (the event loop stays responsive while SQLite / PostgreSQL work); Commit goes to the
database's writer (:meth:`Database.write`: grouped commits on SQLite); an anonymous Calculate
is pure CPU and runs inline, and so does a Calculate without a hold on a SQLite file: one
SELECT on the loop thread's own WAL read connection, which never waits for the writer
(:func:`sales.runs_inline`; a thread hop cost more than the read).
Failures are translated at the edge:

- :class:`RuleViolation` -> the gRPC code of loyalty-rules.md §2.5 with a
  ``google.rpc.ErrorInfo`` (domain ``loyalty.posgw``, reason = the code, metadata);
- transient storage trouble left after the retries -> UNAVAILABLE (reason STORAGE_BUSY), so
  the gateway resends with the same key; anything else -> INTERNAL, logged.

StreamEvents answers every StreamEventsRequest with one StreamEventsResponse (one EventAck per event, in the
batch's order); a stream's batches are processed one after another. Within a batch, each
register's events are applied strictly in order by one task per register, the registers side
by side, so their Commits share the writer's grouped transactions (:meth:`Database.write`);
a refund or cancel is a barrier: it runs alone once everything before it in the batch is
done, and nothing after it starts before it ends (it may refer to a sale just before it,
possibly of another register). After a retriable rejection, the rest of that register's
events on the stream (in this batch and later ones) are refused retriably without being applied,
except after a *deferred* one (SALE_NOT_YET_KNOWN: a refund, cancel or correction whose sale has
not arrived yet): it concerns that event alone, so the register's later events are applied.
With several replicas over one PostgreSQL, a stream whose gateway names itself applies each
register's events under that register's lease (:mod:`simulators.core.fence`): only the newest
stream of a register applies anything, the older one is refused STREAM_SUPERSEDED (retriable).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.rules.types import RuleViolation
from simulators.core import corrections, fence, jobs, refunds, reports, sales, sms, views
from simulators.core.context import Core
from simulators.core.db_errors import is_storage_error

log = logging.getLogger("posgw.core")
DOMAIN = "loyalty.posgw"
SMS_ANSWER_RESERVE_S = 0.05  # of the caller's deadline, kept for withdrawing the code and answering
R = TypeVar("R")

GRPC_CODES: dict[str, grpc.StatusCode] = {
    "UNKNOWN_CUSTOMER": grpc.StatusCode.NOT_FOUND,
    "CODE_EXPIRED": grpc.StatusCode.NOT_FOUND,
    "OPERATION_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "REDEMPTION_NOT_PERMITTED": grpc.StatusCode.PERMISSION_DENIED,
    "RECEIPT_CONFLICT": grpc.StatusCode.ALREADY_EXISTS,
    "GRANT_ALREADY_ISSUED": grpc.StatusCode.ALREADY_EXISTS,
    "INVALID_RECEIPT": grpc.StatusCode.INVALID_ARGUMENT,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "STORAGE_BUSY": grpc.StatusCode.UNAVAILABLE,
    "SALE_NOT_YET_KNOWN": grpc.StatusCode.ABORTED,  # retriable: the sale may still arrive
    "STREAM_SUPERSEDED": grpc.StatusCode.UNAVAILABLE,  # a newer stream owns the register
}
# Retriable rejections that concern the one event only (Rejection.deferred): the register's later
# events are still applied, the gateway resends this one later.
DEFERRED = frozenset({"SALE_NOT_YET_KNOWN"})  # every other §2.5 code is FAILED_PRECONDITION


class CoreFailure(Exception):
    """A failure already translated: gRPC code, reason, message, metadata, retriable."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str, metadata: dict[str, str]) -> None:
        super().__init__(f"{reason}: {message}")
        self.code, self.reason, self.message, self.metadata = code, reason, message, metadata

    @property
    def retriable(self) -> bool:
        return self.code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )

    def status(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        detail = any_pb2.Any()
        detail.Pack(info)
        code_value: int = self.code.value[0]
        st = status_pb2.Status(code=code_value, message=self.message, details=[detail])
        return rpc_status.to_status(st)


def translate(exc: BaseException) -> CoreFailure:
    if isinstance(exc, CoreFailure):
        return exc
    if isinstance(exc, RuleViolation):
        code = GRPC_CODES.get(exc.code, grpc.StatusCode.FAILED_PRECONDITION)
        return CoreFailure(code, exc.code, exc.message, dict(exc.metadata))
    if is_storage_error(exc):
        log.warning("storage busy: %s", type(getattr(exc, "orig", exc)).__name__)
        return CoreFailure(
            grpc.StatusCode.UNAVAILABLE,
            "STORAGE_BUSY",
            "the core's database is busy; resend with the same key",
            {},
        )
    log.exception("internal error in the core")
    return CoreFailure(grpc.StatusCode.INTERNAL, "INTERNAL", f"internal error: {type(exc).__name__}", {})


class LoyaltyCoreService(pb_grpc.LoyaltyCoreServiceServicer):
    def __init__(self, core: Core) -> None:
        self.core = core

    async def _run(
        self, fn: Callable[[Core, Any], R], req: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> R:
        try:
            return await asyncio.to_thread(fn, self.core, req)
        except Exception as exc:  # translated at the edge, see module docstring
            failure = translate(exc)
            await context.abort_with_status(failure.status())  # type: ignore[attr-defined]
            raise  # unreachable: abort raises

    async def _guard(self, call: Awaitable[R], context: grpc.aio.ServicerContext[Any, Any]) -> R:
        try:
            return await call
        except Exception as exc:  # translated at the edge, see module docstring
            failure = translate(exc)
            await context.abort_with_status(failure.status())  # type: ignore[attr-defined]
            raise  # unreachable: abort raises

    async def GetProgram(self, request: pb.GetProgramRequest, context: Any) -> pb.GetProgramResponse:
        return pb.GetProgramResponse(
            program_id=self.core.program.id, version=self.core.version, config_json=self.core.program_json
        )

    async def IdentifyCustomer(self, request: pb.IdentifyCustomerRequest,
                               context: Any) -> pb.IdentifyCustomerResponse:
        return await self._run(views.identify_customer, request, context)

    async def RegisterCustomer(self, request: pb.RegisterCustomerRequest,
                               context: Any) -> pb.RegisterCustomerResponse:
        return await self._run(views.register_customer, request, context)

    async def Calculate(self, request: pb.CalculateRequest, context: Any) -> pb.CalculateResponse:
        if sales.runs_inline(self.core, request):
            try:
                return sales.calculate(self.core, request)
            except Exception as exc:  # translated at the edge, see module docstring
                await context.abort_with_status(translate(exc).status())
                raise  # unreachable: abort raises
        return await self._run(sales.calculate, request, context)

    async def Commit(self, request: pb.CommitRequest, context: Any) -> pb.CommitResponse:
        return await self._guard(self._commit(request), context)

    async def _commit(self, request: pb.CommitRequest) -> pb.CommitResponse:
        return await sales.commit_async(self.core, request)

    async def Refund(self, request: pb.RefundRequest, context: Any) -> pb.RefundResponse:
        return await self._run(refunds.refund, request, context)

    async def Cancel(self, request: pb.CancelRequest, context: Any) -> pb.CancelResponse:
        return await self._run(refunds.cancel, request, context)

    async def GetBalances(self, request: pb.GetBalancesRequest, context: Any) -> pb.GetBalancesResponse:
        return await self._run(views.balances, request, context)

    async def GetReport(self, request: pb.GetReportRequest, context: Any) -> pb.GetReportResponse:
        return await self._run(reports.report, request, context)

    async def IssueAppCode(self, request: pb.IssueAppCodeRequest, context: Any) -> pb.IssueAppCodeResponse:
        return await self._run(views.issue_app_code, request, context)

    async def SendOtp(self, request: pb.SendOtpRequest, context: Any) -> pb.SendOtpResponse:
        return await self._guard(self._send_otp(request, context.time_remaining()), context)

    async def _send_otp(self, req: pb.SendOtpRequest, deadline_s: float | None) -> pb.SendOtpResponse:
        """Issue a code, then hand it to the SMS sender within ``wait_ms`` (and the caller's
        deadline): a provider that is slow or down is answered ``not_sent`` in time and the code
        is withdrawn. The code is in the answer only when the SMS went out."""
        phone, issued = await asyncio.to_thread(views.issue_code, self.core, req)
        if issued.status != "issued":
            return pb.SendOtpResponse(sent=False, status=issued.status, retry_after_s=issued.retry_after_s)
        wait_s = req.wait_ms / 1000 if req.wait_ms else sms.DEFAULT_WAIT_S
        if deadline_s is not None:
            wait_s = max(0.0, min(wait_s, deadline_s - SMS_ANSWER_RESERVE_S))
        sender = self.core.sender
        why = await sms.deliver(sender, phone, sms.text_of(issued.code, req.purpose), wait_s)
        if why:
            log.warning("confirmation code not sent: %s", why)
            await asyncio.to_thread(views.withdraw_code, self.core, phone)
            return pb.SendOtpResponse(sent=False, status="not_sent", message=why)
        debug_code = issued.code if sender.debug else ""
        return pb.SendOtpResponse(sent=True, status="sent", code=issued.code,
                                retry_after_s=issued.retry_after_s, debug_code=debug_code)

    async def VerifyOtp(self, request: pb.VerifyOtpRequest, context: Any) -> pb.VerifyOtpResponse:
        return await self._run(views.verify_otp, request, context)

    async def IssueGrant(self, request: pb.IssueGrantRequest, context: Any) -> pb.IssueGrantResponse:
        return await self._run(jobs.issue_grant, request, context)

    async def RunJobs(self, request: pb.RunJobsRequest, context: Any) -> pb.RunJobsResponse:
        return await self._run(jobs.run_jobs, request, context)

    async def StreamEvents(
        self, request_iterator: AsyncIterator[pb.StreamEventsRequest], context: Any
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        # A register whose event was refused retriably on this stream gets every later event
        # refused the same way, unapplied: the gateway resends from the refused one, so the
        # register's order holds even when storage trouble hits one event in the middle.
        blocked: set[str] = set()
        lease = self._lease(context)
        async for batch in request_iterator:
            yield pb.StreamEventsResponse(acks=await self.apply_batch(batch.events, blocked, lease))

    def _lease(self, context: Any) -> StreamLease | None:
        """The stream's fencing state (:mod:`simulators.core.fence`): PostgreSQL and a gateway
        that names itself only."""
        if context is None or not self.core.db.postgres:  # no call (a unit test) or one process
            return None
        gateway = fence.gateway_of(context.invocation_metadata())
        return StreamLease(gateway, uuid.uuid4().hex) if gateway else None

    async def _claim(self, lease: StreamLease, register_id: str) -> None:
        key = fence.lease_key(lease.gateway, register_id)
        if key not in lease.claimed:
            now = self.core.now()

            def work(s: Any) -> None:
                fence.claim(s, key, lease.stream, now)

            await asyncio.to_thread(self.core.db.transaction, work)
            lease.claimed.add(key)

    async def apply_batch(
        self, events: Sequence[pb.EventEnvelope], blocked: set[str], lease: StreamLease | None = None
    ) -> list[pb.EventAck]:
        """One ack per event, in order. Commits run per register in order, registers side by
        side; a refund / cancel runs alone between them (see the module docstring). ``blocked``
        (registers refused retriably on this stream) is read and extended. With ``lease`` every
        event is applied under its register's lease (claimed on the register's first event)."""
        acks: list[pb.EventAck | None] = [None] * len(events)

        async def fenced(env: pb.EventEnvelope) -> pb.EventAck:
            if lease is None:
                return await self.apply_event(env)
            try:
                await self._claim(lease, env.register_id)
            except Exception as exc:  # the claim's storage trouble: this event, retriably
                return _rejection(env, translate(exc))
            token = fence.CURRENT.set((fence.lease_key(lease.gateway, env.register_id), lease.stream))
            try:
                return await self.apply_event(env)
            finally:
                fence.CURRENT.reset(token)

        async def one(i: int) -> None:
            env = events[i]
            if env.register_id in blocked:
                acks[i] = _refused(env)
                return
            ack = await fenced(env)
            rej = ack.rejected if ack.WhichOneof("result") == "rejected" else None
            if rej is not None and rej.retriable and not rej.deferred:
                blocked.add(env.register_id)
            acks[i] = ack

        async def chain(indexes: list[int]) -> None:
            for i in indexes:
                await one(i)

        segment: dict[str, list[int]] = {}  # register -> its commits since the last barrier

        async def flush() -> None:
            if len(segment) == 1:
                await chain(next(iter(segment.values())))
            elif segment:
                await asyncio.gather(*(chain(ix) for ix in segment.values()))
            segment.clear()

        for i, env in enumerate(events):
            if env.WhichOneof("body") == "commit":
                segment.setdefault(env.register_id, []).append(i)
                continue
            await flush()
            await one(i)
        await flush()
        done = [a for a in acks if a is not None]
        assert len(done) == len(events)  # apply_event answers everything, even a failure
        return done

    async def apply_event(self, env: pb.EventEnvelope) -> pb.EventAck:
        ack = pb.EventAck(event_id=env.event_id, register_id=env.register_id, register_seq=env.register_seq)
        body = env.WhichOneof("body")
        try:
            if body == "commit":
                ack.commit.CopyFrom(await sales.commit_async(self.core, env.commit))
            elif body == "refund":
                ack.refund.CopyFrom(await asyncio.to_thread(refunds.refund, self.core, env.refund))
            elif body == "cancel":
                ack.cancel.CopyFrom(await asyncio.to_thread(refunds.cancel, self.core, env.cancel))
            elif body == "attach_customer":
                ack.attach_customer.CopyFrom(
                    await asyncio.to_thread(corrections.attach_customer, self.core, env.attach_customer))
            else:
                raise RuleViolation("INVALID_RECEIPT", "event has no body", field="body")
        except Exception as exc:  # every event gets an ack: a rejection is an answer too
            return _rejection(env, translate(exc))
        return ack


@dataclass
class StreamLease:
    """One stream's identity for fencing: the gateway it names, its own id, what it claimed."""

    gateway: str
    stream: str
    claimed: set[str] = field(default_factory=set)


def _rejection(env: pb.EventEnvelope, f: CoreFailure) -> pb.EventAck:
    return pb.EventAck(
        event_id=env.event_id, register_id=env.register_id, register_seq=env.register_seq,
        rejected=pb.Rejection(
            reason=f.reason, message=f.message, metadata=f.metadata, retriable=f.retriable,
            deferred=f.retriable and f.reason in DEFERRED,
        ),
    )


def _refused(env: pb.EventEnvelope) -> pb.EventAck:
    return pb.EventAck(
        event_id=env.event_id, register_id=env.register_id, register_seq=env.register_seq,
        rejected=pb.Rejection(
            reason="PRECEDING_EVENT_RETRY", retriable=True,
            message="an earlier event of this register must be resent first",
        ),
    )
