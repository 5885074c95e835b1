"""The gateway's client of the loyalty core: one long-lived gRPC channel, deadlines, breaker.

Owns the single ``grpc.aio`` channel to the core (never a channel per call) with keepalive and
reconnect backoff, TLS / mTLS chosen by :class:`CoreTarget`, the circuit breaker in front of it,
and the translation of gRPC outcomes into :mod:`gateway.errors`:

- core trouble (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED, CANCELLED,
  INTERNAL, UNKNOWN and any other non-business code) -> :class:`CoreUnavailable` (retriable),
  recorded as a breaker failure;
- business refusals (FAILED_PRECONDITION, PERMISSION_DENIED, NOT_FOUND, ALREADY_EXISTS,
  INVALID_ARGUMENT, OUT_OF_RANGE) -> :class:`BusinessRejection` whose ``reason`` is the
  ``google.rpc.ErrorInfo`` reason (a loyalty-rules §2.5 code) and whose metadata is the
  ErrorInfo metadata; the core answered, so they count as breaker successes;
- breaker open -> :class:`CoreUnavailable` at once, without touching the network.

Invariants: every call carries the caller's deadline (``timeout=``, seconds) and
``wait_for_ready=False``, so a down core fails fast instead of queueing the call; a call with
no time left is refused locally. ``posgw_core_calls_total{method,code}`` counts every outcome
(``BREAKER_OPEN`` and ``NO_TIME`` for calls refused locally).

Keepalive note: the core's gRPC server must accept pings at ``keepalive_time_ms`` without calls
(``grpc.http2.min_recv_ping_interval_without_data_ms`` <= that, and
``grpc.keepalive_permit_without_calls`` = 1), or it will answer GOAWAY "too_many_pings".
"""

# ``timeout=`` parameters here are gRPC deadlines handed to the core, not asyncio timeouts.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from gateway.breaker import CircuitBreaker
from gateway.convert import timestamp
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.errors import BusinessRejection, ConfigError, CoreUnavailable
from gateway.metrics import Metrics

log = logging.getLogger("posgw.core")

BUSINESS_CODES = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
# Reason used when a business status carries no ErrorInfo detail.
_DEFAULT_REASON = {
    grpc.StatusCode.NOT_FOUND: "UNKNOWN_CUSTOMER",
    grpc.StatusCode.INVALID_ARGUMENT: "INVALID_RECEIPT",
    grpc.StatusCode.ALREADY_EXISTS: "RECEIPT_CONFLICT",
    grpc.StatusCode.PERMISSION_DENIED: "REDEMPTION_NOT_PERMITTED",
}
MIN_CALL_TIMEOUT_S = 0.001


@dataclass(frozen=True)
class CoreTarget:
    """Where the core is and how to reach it. ``tls`` switches TLS on; ``ca_file`` pins the CA
    (else the system roots); ``cert_file`` + ``key_file`` present a client certificate (mTLS);
    ``server_name`` overrides the name checked against the server certificate."""

    address: str
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""


@dataclass(frozen=True)
class ChannelTuning:
    """Keepalive and reconnect options of the channel (milliseconds)."""

    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 10_000
    keepalive_permit_without_calls: bool = True
    max_pings_without_data: int = 0  # 0 = unlimited
    initial_reconnect_backoff_ms: int = 200
    min_reconnect_backoff_ms: int = 100
    max_reconnect_backoff_ms: int = 5_000
    max_receive_message_bytes: int = 64 * 1024 * 1024

    def options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_permit_without_calls)),
            ("grpc.http2.max_pings_without_data", self.max_pings_without_data),
            ("grpc.initial_reconnect_backoff_ms", self.initial_reconnect_backoff_ms),
            ("grpc.min_reconnect_backoff_ms", self.min_reconnect_backoff_ms),
            ("grpc.max_reconnect_backoff_ms", self.max_reconnect_backoff_ms),
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
        ]


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("gateway config", key, f"cannot read {path!r}: {exc.strerror}",
                          "point it at a readable PEM file") from exc


def channel_credentials(target: CoreTarget) -> grpc.ChannelCredentials:
    """TLS credentials for ``target`` (CA pin and optional client certificate)."""
    if bool(target.cert_file) != bool(target.key_file):
        raise ConfigError("gateway config", "core.cert_file/core.key_file",
                          "a client certificate needs both the certificate and its key",
                          "set both cert_file and key_file, or neither")
    root = _read(target.ca_file, "core.ca_file") if target.ca_file else None
    chain = _read(target.cert_file, "core.cert_file") if target.cert_file else None
    key = _read(target.key_file, "core.key_file") if target.key_file else None
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)


def rejection_from(err: grpc.aio.AioRpcError) -> BusinessRejection:
    """The §2.5 reason and metadata of a business status (ErrorInfo detail when present)."""
    code = err.code()
    message = err.details() or code.name
    try:
        status = rpc_status.from_call(cast(grpc.Call, err))  # AioRpcError has the same accessors
    except ValueError:  # code/message inside the detail disagree with the call: trust the call
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return BusinessRejection(info.reason or code.name, message, dict(info.metadata))
    return BusinessRejection(_DEFAULT_REASON.get(code, code.name), message)


class CoreClient:
    def __init__(
        self,
        target: CoreTarget,
        *,
        metrics: Metrics | None = None,
        breaker: CircuitBreaker | None = None,
        tuning: ChannelTuning | None = None,
    ) -> None:
        self.target = target
        self.metrics = metrics
        self.breaker = breaker or CircuitBreaker()
        if metrics is not None:
            self.breaker.bind_metrics(metrics)
        self.tuning = tuning or ChannelTuning()
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    async def start(self) -> None:
        """Open the channel (idempotent). Does not wait for the core: it may be down."""
        if self._channel is not None:
            return
        options = self.tuning.options()
        if self.target.tls:
            if self.target.server_name:
                options.append(("grpc.ssl_target_name_override", self.target.server_name))
            channel = grpc.aio.secure_channel(self.target.address, channel_credentials(self.target), options)
        else:
            channel = grpc.aio.insecure_channel(self.target.address, options)
        self._channel = channel
        self._stub = pb_grpc.LoyaltyCoreStub(channel)  # type: ignore[no-untyped-call]
        channel.get_state(try_to_connect=True)  # start connecting now, not on the first receipt

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(grace=None)

    @property
    def stub(self) -> Any:
        """The stub on the one long-lived channel (the sender streams events over it)."""
        if self._stub is None:
            raise RuntimeError("CoreClient.start() has not been called")
        return self._stub

    def connectivity(self) -> str:
        """The channel's state name (IDLE, CONNECTING, READY, TRANSIENT_FAILURE...), for status."""
        if self._channel is None:
            return "CLOSED"
        return str(self._channel.get_state(try_to_connect=False).name)

    # ------------------------------------------------------------ calls

    async def calculate(
        self, draft: pb.ReceiptDraft, *, timeout: float, hold_ttl_s: int = 0
    ) -> pb.Calculation:
        req = pb.CalculateRequest(draft=draft, hold_ttl_s=hold_ttl_s)
        result: pb.Calculation = await self._unary("Calculate", req, timeout)
        return result

    async def identify(self, ref: pb.CustomerRef, *, timeout: float) -> pb.Customer | None:
        """The customer, or None when the core does not know them (UNKNOWN_CUSTOMER, CODE_EXPIRED)."""
        try:
            customer: pb.Customer = await self._unary(
                "IdentifyCustomer", pb.IdentifyCustomerRequest(customer=ref), timeout
            )
        except BusinessRejection as exc:
            if exc.reason in ("UNKNOWN_CUSTOMER", "CODE_EXPIRED"):
                return None
            raise
        return customer

    async def get_program(self, *, timeout: float) -> pb.Program:
        program: pb.Program = await self._unary("GetProgram", pb.GetProgramRequest(), timeout)
        return program

    async def balance_pages(
        self, *, timeout: float, active_since: datetime | None = None, page_size: int = 1000
    ) -> AsyncIterator[pb.GetBalancesResponse]:
        """Every page of the balance snapshot; ``timeout`` applies to each page's call."""
        token = ""
        while True:
            req = pb.GetBalancesRequest(page_size=page_size, page_token=token)
            if active_since is not None:
                req.active_since.CopyFrom(timestamp(active_since))
            page: pb.GetBalancesResponse = await self._unary("GetBalances", req, timeout)
            yield page
            token = page.next_page_token
            if not token:
                return

    async def get_balances(
        self, *, timeout: float, active_since: datetime | None = None
    ) -> AsyncIterator[pb.BalanceEntry]:
        async for page in self.balance_pages(timeout=timeout, active_since=active_since):
            for entry in page.customers:
                yield entry

    async def _unary(self, method: str, request: Message, timeout: float) -> Any:
        stub = self.stub
        if timeout < MIN_CALL_TIMEOUT_S:
            self._count(method, "NO_TIME")
            raise CoreUnavailable(f"{method}: no time left in the budget to ask the core")
        if not self.breaker.allow():
            self._count(method, "BREAKER_OPEN")
            raise CoreUnavailable(f"{method}: circuit breaker open after repeated core failures")
        try:
            response = await getattr(stub, method)(request, timeout=timeout, wait_for_ready=False)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            self._count(method, code.name)
            if code in BUSINESS_CODES:
                self.breaker.record_success()
                raise rejection_from(err) from None
            self.breaker.record_failure()
            raise CoreUnavailable(f"{method}: {code.name}: {err.details()}") from None
        except asyncio.CancelledError:
            # Our caller gave up (its budget ran out): as good as a deadline miss.
            self._count(method, "CANCELLED")
            self.breaker.record_failure()
            raise
        except (grpc.aio.UsageError, grpc.RpcError) as err:  # channel closed under us
            self._count(method, "CLIENT_ERROR")
            self.breaker.record_failure()
            raise CoreUnavailable(f"{method}: {err}") from None
        self._count(method, "OK")
        self.breaker.record_success()
        return response

    def _count(self, method: str, code: str) -> None:
        if self.metrics is not None:
            self.metrics.child(self.metrics.core_calls, method, code).inc()
