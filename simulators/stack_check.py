"""Talking to the reference core from outside the gateway, and the exactly-once check.

Owns:
- :class:`CoreAdmin`: a gRPC client for the core's operator / simulator RPCs (register
  customers, referral chains, app codes, grants, identify, report), every call with a deadline;
- :func:`read_applied`: what the core has applied, read from its SQLite file opened
  read-only (table ``operations``: one row per applied (kind, key), see
  :mod:`simulators.core.db`);
- :func:`check_delivery`: compares what the gateway acknowledged to tills with what the core
  applied. ``lost`` = acknowledged, not applied and not in the gateway's operator queue;
  ``duplicates`` = a (kind, key) applied more than once, or one till document applied under
  two different keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import grpc
from sqlalchemy import create_engine, select

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from simulators.core.tables import Operation

DOCUMENT_KINDS = ("sale", "refund", "cancel")


class CoreAdmin:
    """Operator RPCs of the reference core at ``address`` (one lazily opened channel)."""

    def __init__(self, address: str, *, timeout_s: float = 5.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.LoyaltyCoreServiceStub | None = None

    @property
    def stub(self) -> pb_grpc.LoyaltyCoreServiceStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.address)
            self._stub = pb_grpc.LoyaltyCoreServiceStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
        self._channel = self._stub = None

    async def register(self, phone: str, name: str = "", *, referrer_code: str = "",
                       channel: str = "cashier", at: datetime | None = None) -> pb.RegisterCustomerResponse:
        """Register a customer; ``at`` back-dates the registration (and its welcome lot). The answer
        holds the customer and whether this call created them with a welcome bonus."""
        req = pb.RegisterCustomerRequest(phone=phone, name=name, referrer_code=referrer_code,
                                         channel="referral" if referrer_code else channel)
        if at is not None:
            req.occurred_at.FromDatetime(at)
        answer: pb.RegisterCustomerResponse = await self.stub.RegisterCustomer(req, timeout=self.timeout_s)
        return answer

    async def referral_chain(self, people: Sequence[tuple[str, str]]) -> list[pb.RegisterCustomerResponse]:
        """Register ``[(phone, name), ...]``, each invited by the one before."""
        out: list[pb.RegisterCustomerResponse] = []
        for phone, name in people:
            code = out[-1].customer.referral_code if out else ""
            out.append(await self.register(phone, name, referrer_code=code))
        return out

    async def customer(self, phone: str) -> pb.Customer:
        req = pb.IdentifyCustomerRequest(customer=pb.CustomerRef(phone=phone))
        answer: pb.IdentifyCustomerResponse = await self.stub.IdentifyCustomer(req, timeout=self.timeout_s)
        return answer.customer

    async def app_code(self, phone: str) -> str:
        req = pb.IssueAppCodeRequest(customer=pb.CustomerRef(phone=phone))
        code: pb.IssueAppCodeResponse = await self.stub.IssueAppCode(req, timeout=self.timeout_s)
        return str(code.code)

    async def grant(self, phone: str, kind: str, *, points: int = 0, key: str = "",
                    platform: str = "") -> pb.IssueGrantResponse:
        req = pb.IssueGrantRequest(customer=pb.CustomerRef(phone=phone), kind=kind, points=points,
                                   grant_key=key, platform=platform)
        result: pb.IssueGrantResponse = await self.stub.IssueGrant(req, timeout=self.timeout_s)
        return result

    async def report(self) -> pb.GetReportResponse:
        report: pb.GetReportResponse = await self.stub.GetReport(pb.GetReportRequest(),
                                                                  timeout=self.timeout_s)
        return report


@dataclass(frozen=True)
class AppliedOps:
    """Applied operations of the core: how many rows per (kind, key)."""

    counts: Counter[tuple[str, str]]

    def keys(self, kind: str | None = None) -> set[str]:
        return {k for (kd, k) in self.counts if kind is None or kd == kind}

    def count(self, kind: str) -> int:
        return sum(n for (kd, _), n in self.counts.items() if kd == kind)


def read_applied(db_path: Path) -> AppliedOps:
    """Every applied sale / refund / cancel in the core's SQLite file (opened read-only)."""
    engine = create_engine(f"sqlite:///file:{db_path}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Operation.kind, Operation.key).where(Operation.kind.in_(DOCUMENT_KINDS))
            ).all()
    finally:
        engine.dispose()
    return AppliedOps(Counter((str(kind), str(key)) for kind, key in rows))


class AckLike(Protocol):
    """What a till recorded for one acknowledged document (``simulators.registers.native.Ack``)."""

    @property
    def kind(self) -> str: ...
    @property
    def identity(self) -> str: ...
    @property
    def key(self) -> str: ...


@dataclass(frozen=True)
class DeliveryCheck:
    acknowledged: int  # distinct keys the gateway acknowledged
    acknowledged_sales: int
    sales_at_core: int  # acknowledged sale keys the core applied
    applied_total: int  # sale / refund / cancel rows at the core
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    in_operator_queue: list[str] = field(default_factory=list)
    applied_unacknowledged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicates

    def problems(self, limit: int = 10) -> str:
        parts = []
        if self.lost:
            parts.append(f"lost {len(self.lost)}: {self.lost[:limit]}")
        if self.duplicates:
            parts.append(f"duplicates {len(self.duplicates)}: {self.duplicates[:limit]}")
        return "; ".join(parts) or "none"


def check_delivery(acks: Iterable[AckLike], applied: AppliedOps,
                   operator_queue_keys: Iterable[str] = ()) -> DeliveryCheck:
    """Compare acknowledged documents with what the core applied (see the module docstring)."""
    acked: dict[tuple[str, str], str] = {}  # (kind, key) -> identity
    keys_by_doc: dict[tuple[str, str], set[str]] = {}
    for ack in acks:
        acked[(ack.kind, ack.key)] = ack.identity
        keys_by_doc.setdefault((ack.kind, ack.identity), set()).add(ack.key)
    queued = set(operator_queue_keys)
    applied_keys = set(applied.counts)
    lost: list[str] = []
    in_queue: list[str] = []
    for kind, key in sorted(acked):
        if (kind, key) not in applied_keys:
            (in_queue if key in queued else lost).append(key)
    duplicates = [f"{kind}:{key} x{n}" for (kind, key), n in sorted(applied.counts.items()) if n > 1]
    for (kind, identity), keys in sorted(keys_by_doc.items()):
        if sum((kind, k) in applied_keys for k in keys) > 1:
            duplicates.append(f"{kind} {identity} applied under keys {sorted(keys)}")
    sales = {key for kind, key in acked if kind == "sale"}
    return DeliveryCheck(
        acknowledged=len(acked), acknowledged_sales=len(sales),
        sales_at_core=len(sales & applied.keys("sale")), applied_total=sum(applied.counts.values()),
        lost=lost, duplicates=duplicates, in_operator_queue=in_queue,
        applied_unacknowledged=sorted(f"{k}:{key}" for k, key in applied_keys - set(acked)),
    )
