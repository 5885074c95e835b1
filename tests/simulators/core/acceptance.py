"""Black-box client helpers for the reference core's acceptance tests.

Owns: starting a core (``simulators.core.server.running_core``) with a program from
``config/programs/`` and an injectable clock, one ``grpc.aio`` channel per core, and thin
typed wrappers for the RPCs the tests use. Every call carries a deadline. Nothing here reaches
into the core's storage: state is set up and observed only through the gRPC API.

Conventions: all times are UTC ``datetime``s; :data:`T0` is the default "now" of a test core;
the program time zone of seed000..seed002 is Europe/Moscow (UTC+3, no DST).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[3]
PROGRAMS = ROOT / "config" / "programs"
DEADLINE_S = 10.0
T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)  # a Monday, 12:00 in Moscow
MSK = timedelta(hours=3)
STAFF = pb.Staff(store_id="S1", terminal_id="T1", cashier_id="C1", cashier_name="Ольга")

_phones = itertools.count(1)


def new_phone() -> str:
    """A fresh, valid Russian mobile number (unique per test process)."""
    return f"+7912{next(_phones):07d}"


def msk(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Moscow wall-clock time as a UTC datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC) - MSK


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


class Clock:
    """The core's injected clock: a settable "now" (UTC)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def load(seed: str, **overrides: Any) -> Any:
    """The program ``config/programs/<seed>.toml``, with dataclass fields replaced."""
    from gateway.rules.program import load_program

    program = load_program(PROGRAMS / f"{seed}.toml")
    return dataclasses.replace(program, **overrides) if overrides else program


def line(line_id: str, amount: int, qty: int = 1, **kw: Any) -> pb.Line:
    """A receipt line; ``qty`` in whole units (converted to thousandths)."""
    return pb.Line(
        line_id=line_id,
        sku=f"SKU-{line_id}",
        name=f"item {line_id}",
        qty_milli=qty * 1000,
        amount=amount,
        **kw,
    )


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


async def expect_error(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str | None = None
) -> dict[str, str]:
    """Await ``call``, assert it fails with ``code`` (and ErrorInfo ``reason``); return metadata."""
    try:
        result = await call
    except grpc.aio.AioRpcError as err:
        assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
        if reason is None:
            return {}
        info = error_info(err)
        assert info is not None, f"no ErrorInfo detail on {err.code()}: {err.details()}"
        assert info.reason == reason, f"expected reason {reason}, got {info.reason}: {err.details()}"
        assert info.domain == "loyalty.posgw"
        return dict(info.metadata)
    raise AssertionError(f"expected {code} {reason or ''}, got a result: {result}")


@dataclasses.dataclass
class Core:
    """A running core and a client for it."""

    address: str
    stub: pb_grpc.LoyaltyCoreServiceStub
    channel: grpc.aio.Channel
    clock: Clock
    _keys: itertools.count[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def key(self, prefix: str = "K") -> str:
        """A fresh idempotency key / receipt number, unique within this core."""
        return f"{prefix}-{next(self._keys)}"

    # -- customers ---------------------------------------------------------------------

    async def join(
        self,
        phone: str | None = None,
        *,
        referrer: pb.Customer | None = None,
        birth_date: str = "",
        name: str = "Анна Кузнецова",
        at: datetime | None = None,
    ) -> pb.RegisterCustomerResponse:
        """RegisterCustomer's whole answer (the customer, created, welcome_points)."""
        req = pb.RegisterCustomerRequest(
            phone=phone or new_phone(),
            name=name,
            birth_date=birth_date,
            channel="cashier",
            referrer_code=referrer.referral_code if referrer is not None else "",
            staff=STAFF,
            occurred_at=ts(at or self.clock.now),
        )
        if referrer is not None:
            req.channel = "referral"
        answer: pb.RegisterCustomerResponse = await self.stub.RegisterCustomer(req, timeout=DEADLINE_S)
        return answer

    async def register(self, phone: str | None = None, **kw: Any) -> pb.Customer:
        """The customer :meth:`join` registered (same arguments)."""
        return (await self.join(phone, **kw)).customer

    async def customer(self, customer_id: str) -> pb.Customer:
        answer: pb.IdentifyCustomerResponse = await self.stub.IdentifyCustomer(
            pb.IdentifyCustomerRequest(
                customer=pb.CustomerRef(customer_id=customer_id), at=ts(self.clock.now)
            ),
            timeout=DEADLINE_S,
        )
        return answer.customer

    async def balance(self, customer_id: str) -> int:
        return (await self.customer(customer_id)).balance

    async def strong(self, customer_id: str) -> pb.CustomerRef:
        """A strong identification: a fresh app code issued for the customer."""
        code = await self.stub.IssueAppCode(
            pb.IssueAppCodeRequest(customer=pb.CustomerRef(customer_id=customer_id), at=ts(self.clock.now)),
            timeout=DEADLINE_S,
        )
        return pb.CustomerRef(app_code=code.code)

    async def grant(self, customer_id: str, points: int, kind: str = "manual") -> pb.IssueGrantResponse:
        return await self.stub.IssueGrant(
            pb.IssueGrantRequest(
                customer=pb.CustomerRef(customer_id=customer_id),
                kind=kind,
                points=points,
                at=ts(self.clock.now),
                grant_key=self.key("G"),
            ),
            timeout=DEADLINE_S,
        )

    async def run_jobs(self, at: datetime | None = None) -> pb.RunJobsResponse:
        return await self.stub.RunJobs(pb.RunJobsRequest(at=ts(at or self.clock.now)), timeout=DEADLINE_S)

    # -- receipts ----------------------------------------------------------------------

    def draft(
        self,
        ref: pb.CustomerRef,
        lines: Iterable[pb.Line],
        *,
        redeem: int = 0,
        at: datetime | None = None,
        total: int = 0,
        number: str = "",
    ) -> pb.ReceiptDraft:
        return pb.ReceiptDraft(
            customer=ref,
            lines=list(lines),
            redeem_points=redeem,
            occurred_at=ts(at or self.clock.now),
            staff=STAFF,
            register_id="R1",
            receipt_number=number or self.key("N"),
            total=total,
            channel="test",
        )

    async def calculate(self, draft: pb.ReceiptDraft, hold_ttl_s: int = 0) -> pb.CalculateResponse:
        return await self.stub.Calculate(
            pb.CalculateRequest(draft=draft, hold_ttl_s=hold_ttl_s), timeout=DEADLINE_S
        )

    async def commit(
        self,
        draft: pb.ReceiptDraft,
        key: str | None = None,
        *,
        hold_id: str = "",
        expected: pb.Expected | None = None,
    ) -> pb.CommitResponse:
        req = pb.CommitRequest(idempotency_key=key or self.key("S"), draft=draft, hold_id=hold_id)
        if expected is not None:
            req.expected.CopyFrom(expected)
        return await self.stub.Commit(req, timeout=DEADLINE_S)

    async def buy(
        self,
        ref: pb.CustomerRef,
        *amounts: int,
        redeem: int = 0,
        accruable: bool = True,
        at: datetime | None = None,
    ) -> pb.CommitResponse:
        """Commit a simple sale with one line per amount."""
        flags = {} if accruable else {"accruable": False}
        lines = [line(f"L{i + 1}", a, **flags) for i, a in enumerate(amounts)]
        return await self.commit(self.draft(ref, lines, redeem=redeem, at=at))

    async def refund(
        self,
        operation_id: str,
        *,
        lines: dict[str, int] | None = None,
        full: bool = False,
        key: str | None = None,
        at: datetime | None = None,
    ) -> pb.RefundResponse:
        """Refund; ``lines`` maps line_id -> returned whole units."""
        req = pb.RefundRequest(
            refund_key=key or self.key("R"),
            sale=pb.SaleRef(operation_id=operation_id),
            full=full,
            lines=[pb.RefundLine(line_id=k, qty_milli=v * 1000) for k, v in (lines or {}).items()],
            occurred_at=ts(at or self.clock.now),
            staff=STAFF,
            register_id="R1",
        )
        return await self.stub.Refund(req, timeout=DEADLINE_S)

    async def cancel(
        self, operation_id: str = "", *, hold_id: str = "", key: str | None = None, at: datetime | None = None
    ) -> pb.CancelResponse:
        req = pb.CancelRequest(
            cancel_key=key or self.key("X"),
            hold_id=hold_id,
            occurred_at=ts(at or self.clock.now),
            staff=STAFF,
            register_id="R1",
        )
        if operation_id:
            req.sale.operation_id = operation_id
        return await self.stub.Cancel(req, timeout=DEADLINE_S)

    async def report(self) -> pb.GetReportResponse:
        return await self.stub.GetReport(
            pb.GetReportRequest(
                **{"from": ts(datetime(2000, 1, 1, tzinfo=UTC))}, to=ts(datetime(2100, 1, 1, tzinfo=UTC))
            ),
            timeout=DEADLINE_S,
        )


def phone_ref(customer: pb.Customer) -> pb.CustomerRef:
    """A weak identification by the customer's phone."""
    return pb.CustomerRef(phone=customer.phone)


def payouts_by_customer(result: pb.CommitResponse) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in result.payouts:
        out[p.customer_id] = out.get(p.customer_id, 0) + p.points
    return out


def clawbacks_by_customer(result: pb.RefundResponse) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in result.clawbacks:
        out[c.customer_id] = out.get(c.customer_id, 0) + c.points
    return out


@asynccontextmanager
async def running(program: Any, db_url: str, clock: Clock | None = None) -> AsyncIterator[Core]:
    """Start a reference core on ``db_url`` with ``program`` (a seed name or a Program)."""
    from simulators.core.server import running_core

    if isinstance(program, str):
        program = load(program)
    clock = clock or Clock()
    async with running_core(program, db_url, now=clock) as address:
        channel = grpc.aio.insecure_channel(address)
        try:
            await asyncio.wait_for(channel.channel_ready(), DEADLINE_S)
            stub = pb_grpc.LoyaltyCoreServiceStub(channel)
            yield Core(address=address, stub=stub, channel=channel, clock=clock)
        finally:
            await channel.close()
