"""The gateway's client of the loyalty core: one long-lived gRPC channel, deadlines, breaker.

Owns the single ``grpc.aio`` channel to the core (never a channel per call) with keepalive and
reconnect backoff, TLS / mTLS chosen by :class:`CoreTarget`, the circuit breaker in front of it,
and the translation of gRPC outcomes into :mod:`gateway.errors`, by one table for unary calls
and the sender's event stream alike (:func:`error_from`):

- core trouble (:data:`RETRIABLE_CODES`: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
  RESOURCE_EXHAUSTED, CANCELLED, INTERNAL, UNKNOWN) -> :class:`CoreUnavailable` (retriable),
  recorded as a breaker failure;
- business refusals (:data:`BUSINESS_CODES`: FAILED_PRECONDITION, PERMISSION_DENIED,
  NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, OUT_OF_RANGE) -> :class:`BusinessRejection` whose
  ``reason`` is the ``google.rpc.ErrorInfo`` reason (a loyalty-rules §2.5 code) and whose
  metadata is the ErrorInfo metadata; the core answered, so they count as breaker successes;
- any other code (UNAUTHENTICATED, UNIMPLEMENTED, DATA_LOSS...) -> :class:`CoreRefused`, a
  :class:`CoreUnavailable` that is not retriable (credentials or versions need fixing),
  recorded as a breaker failure;
- breaker open -> :class:`CoreUnavailable` at once, without touching the network.

Invariants: every unary call carries the caller's deadline (``timeout=``, seconds) and
``wait_for_ready=False``, so a down core fails fast instead of queueing the call; a call with
no time left is refused locally. ``posgw_core_calls_total{method,code}`` counts every outcome
(``BREAKER_OPEN`` and ``NO_TIME`` for calls refused locally). The event stream
(:meth:`CoreClient.open_events`, :class:`EventStream`) goes through the same breaker, table and
counter: see :class:`EventStream` for how a stream's outcome is counted.

Several core replicas: ``CoreTarget.address`` may list several ``host:port`` (comma-separated) or
name one DNS name with several records; the channel spreads calls and streams over them with
gRPC's ``round_robin`` policy (:meth:`CoreTarget.channel_target`: IP literals become a static
``ipv4:``/``ipv6:`` target, host names are resolved once at start). A replica that dies is left
at once when its connection breaks, else within the keepalive bound (``keepalive_time_ms`` +
``keepalive_timeout_ms``); the sender then reopens its stream on a live replica and resends
from the first unacknowledged event. Every stream names this client (metadata
``posgw-gateway``: the daemon's id, stable across its restarts) so the core can fence a register's
older stream.

Keepalive note: the core's gRPC server must accept pings at ``keepalive_time_ms`` without calls
(``grpc.http2.min_ping_interval_without_data_ms`` <= that, and
``grpc.keepalive_permit_without_calls`` = 1), or it will answer GOAWAY "too_many_pings".
"""

# ``timeout=`` parameters here are gRPC deadlines handed to the core, not asyncio timeouts.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from gateway.breaker import CircuitBreaker
from gateway.convert import timestamp
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.errors import BusinessRejection, ConfigError, CoreRefused, CoreUnavailable, GatewayError
from gateway.metrics import Metrics

# The one table of retriable gRPC status codes (unary calls and the event stream alike): the
# core is down, slow, overloaded or broken for now, and the same request may succeed later.
RETRIABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
# The core answered with a business refusal (final; the core is healthy).
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

    def addresses(self) -> list[str]:
        """The ``host:port`` entries of ``address`` (one, or several comma-separated)."""
        return [part.strip() for part in self.address.split(",") if part.strip()]

    def channel_target(self) -> str:
        """The gRPC target: ``address`` itself for one entry (DNS resolves it, every record is
        used by round_robin), a static ``ipv4:``/``ipv6:`` list for several. Host names in a
        list are resolved here, once. Raises :class:`ConfigError` for an unusable entry."""
        parts = self.addresses()
        if len(parts) == 1:
            return parts[0]
        ips: list[str] = []
        for part in parts:
            host, _, port = part.rpartition(":")
            host = host.strip("[]")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError("gateway config", "core.address", f"{part!r} is not host:port",
                                  "list the core replicas as host:port,host:port")
            ips.extend(f"{ip}:{port}" if ":" not in ip else f"[{ip}]:{port}" for ip in _resolve(host, part))
        families = {"ipv6" if ip.startswith("[") else "ipv4" for ip in ips}
        if len(families) > 1:
            raise ConfigError("gateway config", "core.address", "the list mixes IPv4 and IPv6 addresses",
                              "list replicas of one address family")
        return f"{families.pop()}:{','.join(dict.fromkeys(ips))}"

    def authority_name(self) -> str:
        """The name a TLS certificate is checked against for a list: ``server_name``, else the
        first entry's host when it is a name (a static IP target would check the IP)."""
        if self.server_name or len(self.addresses()) == 1:
            return self.server_name
        host = self.addresses()[0].rpartition(":")[0].strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return host
        return ""


def _resolve(host: str, entry: str) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError("gateway config", "core.address", f"cannot resolve {entry!r}: {exc}",
                          "fix the name or list IP addresses") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# spread calls and streams over every address the target resolves to (one subchannel each)
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
GATEWAY_METADATA = "posgw-gateway"


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
            # any unanswered ping ends the transport after the same time: a keepalive ping is not
            # sent while another ping (flow control's) is outstanding, and that one would
            # otherwise wait gRPC's default minute before a frozen core is given up
            ("grpc.http2.ping_timeout_ms", self.keepalive_timeout_ms),
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


def error_from(method: str, err: grpc.aio.AioRpcError) -> GatewayError:
    """The gateway error for a gRPC status, by the module's one table (see the module docstring)."""
    code = err.code()
    if code in BUSINESS_CODES:
        return rejection_from(err)
    text = f"{method}: {code.name}: {err.details()}"
    return CoreUnavailable(text) if code in RETRIABLE_CODES else CoreRefused(text)


class CoreCalls(Protocol):
    """The unary calls the pipeline (calculate, identify) and the offline cache (program,
    balance snapshot) make to the core; :class:`CoreClient` is the real one. Errors are those of
    :func:`error_from`: :class:`CoreUnavailable` (the core cannot answer now) or
    :class:`BusinessRejection`."""

    async def calculate(
        self, draft: pb.ReceiptDraft, *, timeout: float, hold_ttl_s: int = 0
    ) -> pb.CalculateResponse: ...

    async def identify(self, ref: pb.CustomerRef, *, timeout: float) -> pb.Customer | None: ...

    async def get_program(self, *, timeout: float) -> pb.GetProgramResponse: ...

    def balance_pages(
        self, *, timeout: float, active_since: datetime | None = None, page_size: int = 1000
    ) -> AsyncIterator[pb.GetBalancesResponse]: ...


class StreamCall(Protocol):
    """The part of a ``grpc.aio`` stream-stream call an :class:`EventStream` uses. Requests are
    serialized ``StreamEventsRequest`` messages (the call's request serializer is the identity)."""

    async def write(self, request: bytes) -> None: ...

    async def read(self) -> Any: ...  # pb.StreamEventsResponse, or grpc.aio.EOF

    def cancel(self) -> bool: ...


# What a stream call raises when the channel or the call is unusable (besides AioRpcError).
_CALL_ERRORS = (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError, ConnectionError)
STREAM_METHOD = "StreamEvents"
STREAM_PATH = f"/{pb.DESCRIPTOR.services_by_name['LoyaltyCoreService'].full_name}/{STREAM_METHOD}"


def _identity(request: bytes) -> bytes:
    """The stream's request serializer: the sender writes StreamEventsRequest messages already serialized."""
    return request


class EventStream:
    """One ``StreamEvents`` call on the client's channel (:meth:`CoreClient.open_events`).

    :meth:`write` and :meth:`read` raise the errors of :func:`error_from` (the same table as
    unary calls); the core ending the stream is a :class:`CoreUnavailable` (retriable).

    Breaker and ``posgw_core_calls_total{method="StreamEvents"}``, the stream's counterpart of one
    unary call's outcome:
    - every StreamEventsResponse read records a breaker success: a stream the core answers is healthy, however
      long it lives;
    - the stream's first failure is its outcome, counted once by code: a gRPC error (recorded like
      the same status on a unary call), or a fault the caller found in the core's answers
      (:meth:`fault`: DEADLINE_EXCEEDED for no ack in time, INTERNAL for an answer that breaks the
      contract; both breaker failures). The core ending the stream counts ``OK`` and records
      nothing (it answered, but acked nothing);
    - a stream the caller closes without a failure counts ``CLOSED`` and records nothing.
    """

    __slots__ = ("_breaker", "_call", "_client", "_ended")

    def __init__(self, client: CoreClient, call: StreamCall) -> None:
        self._client = client
        self._breaker = client.breaker
        self._call = call
        self._ended = False

    async def write(self, batch: bytes | pb.StreamEventsRequest) -> None:
        """Send one StreamEventsRequest: its serialized bytes as they are (the sender frames stored
        envelopes, :mod:`gateway.convert`), or a message, serialized here."""
        data = batch if isinstance(batch, bytes) else batch.SerializeToString()
        try:
            await self._call.write(data)
        except _CALL_ERRORS as err:
            raise self._failed(err) from None

    async def read(self) -> pb.StreamEventsResponse:
        try:
            reply = await self._call.read()
        except _CALL_ERRORS as err:
            raise self._failed(err) from None
        if reply is grpc.aio.EOF:  # type: ignore[attr-defined]  # missing from grpc-stubs
            self._end("OK")
            raise CoreUnavailable(f"{STREAM_METHOD}: the core closed the stream")
        self._breaker.record_success()
        return cast(pb.StreamEventsResponse, reply)

    def fault(self, code: grpc.StatusCode, message: str) -> GatewayError:
        """The caller found the core's answers unusable: end the stream's account with ``code``
        (as if the core had answered it) and return the error to raise."""
        self._end(code.name, healthy=code in BUSINESS_CODES)
        text = f"{STREAM_METHOD}: {message}"
        return CoreUnavailable(text) if code in RETRIABLE_CODES else CoreRefused(text)

    def close(self) -> None:
        """Cancel the call (idempotent); a stream that had not failed counts ``CLOSED``."""
        self._end("CLOSED")
        self._call.cancel()

    def _failed(self, err: Exception) -> GatewayError:
        if isinstance(err, grpc.aio.AioRpcError):
            code = err.code()
            self._end(code.name, healthy=code in BUSINESS_CODES)
            return error_from(STREAM_METHOD, err)
        self._end("CLIENT_ERROR", healthy=False)  # the channel or the call is gone under us
        return CoreUnavailable(f"{STREAM_METHOD}: {err!r}")

    def _end(self, code: str, *, healthy: bool | None = None) -> None:
        if self._ended:  # the stream's outcome is its first one
            return
        self._ended = True
        self._client.settle(STREAM_METHOD, code, healthy)


class CoreClient:
    def __init__(
        self,
        target: CoreTarget,
        *,
        metrics: Metrics | None = None,
        breaker: CircuitBreaker | None = None,
        tuning: ChannelTuning | None = None,
        gateway_id: str = "",
    ) -> None:
        self.target = target
        self.metrics = metrics
        self.breaker = breaker or CircuitBreaker()
        if metrics is not None:
            self.breaker.bind_metrics(metrics)
        self.tuning = tuning or ChannelTuning()
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._stream_events: Any = None  # StreamEvents with the identity request serializer
        # names this client's streams (the core fences a register's older stream by it): the daemon
        # passes one that survives its restarts; a random one per client otherwise
        self.gateway_id = gateway_id or uuid.uuid4().hex

    async def start(self) -> None:
        """Open the channel (idempotent). Does not wait for the core: it may be down."""
        if self._channel is not None:
            return
        options = [*self.tuning.options(), ("grpc.service_config", ROUND_ROBIN)]
        address = self.target.channel_target()
        if self.target.tls:
            name = self.target.authority_name()
            if name:
                options.append(("grpc.ssl_target_name_override", name))
            channel = grpc.aio.secure_channel(address, channel_credentials(self.target), options)
        else:
            channel = grpc.aio.insecure_channel(address, options)
        self._channel = channel
        self._stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        self._stream_events = channel.stream_stream(
            STREAM_PATH, request_serializer=_identity,
            response_deserializer=pb.StreamEventsResponse.FromString)
        channel.get_state(try_to_connect=True)  # start connecting now, not on the first receipt

    async def close(self) -> None:
        channel, self._channel, self._stub, self._stream_events = self._channel, None, None, None
        if channel is not None:
            await channel.close(grace=None)

    @property
    def stub(self) -> Any:
        """The stub on the one long-lived channel."""
        if self._stub is None:
            raise RuntimeError("CoreClient.start() has not been called")
        return self._stub

    # ------------------------------------------------------------ the event stream

    def open_events(self) -> EventStream:
        """Open a ``StreamEvents`` call on the one channel (``wait_for_ready=False``: a down core
        fails the stream at once). No deadline: the stream lives as long as delivery goes on, and
        its user watches for acks (:meth:`EventStream.fault`). Raises :class:`CoreUnavailable`
        without touching the network while the breaker is open."""
        if not self.breaker.allow():
            self.settle(STREAM_METHOD, "BREAKER_OPEN", None)
            raise CoreUnavailable(f"{STREAM_METHOD}: circuit breaker open after repeated core failures")
        return EventStream(self, self._events_call())

    def _events_call(self) -> StreamCall:
        """The raw call behind :meth:`open_events` (the seam an in-process test core replaces):
        ``StreamEvents`` on the one channel, its requests bytes (identity serializer)."""
        if self._stream_events is None:
            raise RuntimeError("CoreClient.start() has not been called")
        metadata = ((GATEWAY_METADATA, self.gateway_id),)
        return cast(StreamCall, self._stream_events(wait_for_ready=False, metadata=metadata))

    # ------------------------------------------------------------ calls

    async def calculate(
        self, draft: pb.ReceiptDraft, *, timeout: float, hold_ttl_s: int = 0
    ) -> pb.CalculateResponse:
        req = pb.CalculateRequest(draft=draft, hold_ttl_s=hold_ttl_s)
        result: pb.CalculateResponse = await self._unary("Calculate", req, timeout)
        return result

    async def identify(self, ref: pb.CustomerRef, *, timeout: float) -> pb.Customer | None:
        """The customer, or None when the core does not know them (UNKNOWN_CUSTOMER, CODE_EXPIRED)."""
        try:
            answer: pb.IdentifyCustomerResponse = await self._unary(
                "IdentifyCustomer", pb.IdentifyCustomerRequest(customer=ref), timeout
            )
        except BusinessRejection as exc:
            if exc.reason in ("UNKNOWN_CUSTOMER", "CODE_EXPIRED"):
                return None
            raise
        return answer.customer

    async def get_program(self, *, timeout: float) -> pb.GetProgramResponse:
        program: pb.GetProgramResponse = await self._unary("GetProgram", pb.GetProgramRequest(), timeout)
        return program

    async def send_code(self, phone: str, *, purpose: str, wait_ms: int,
                        timeout: float) -> pb.SendOtpResponse:
        """SendOtp: a confirmation code for ``phone``, texted by the core within ``wait_ms`` (the
        answer's ``status``: sent, not_sent, rate_limited or locked; ``code`` only when sent)."""
        req = pb.SendOtpRequest(phone=phone, purpose=purpose, wait_ms=max(0, wait_ms))
        result: pb.SendOtpResponse = await self._unary("SendOtp", req, timeout)
        return result

    async def verify_code(self, phone: str, code: str, *, timeout: float) -> pb.VerifyOtpResponse:
        """VerifyOtp: does ``code`` confirm ``phone`` (a wrong one counts towards the phone's lock)."""
        result: pb.VerifyOtpResponse = await self._unary(
            "VerifyOtp", pb.VerifyOtpRequest(phone=phone, code=code), timeout)
        return result

    async def register_customer(self, *, phone: str, card: str, name: str, email: str, birth_date: str,
                                gender: str, store_id: str, timeout: float) -> str:
        """RegisterCustomer (a till created the customer): the core's id, the known one for a
        phone or card it already has."""
        req = pb.RegisterCustomerRequest(phone=phone, card=card, name=name, email=email,
                                         birth_date=birth_date, gender=gender, channel="cashier",
                                         staff=pb.Staff(store_id=store_id))
        answer: pb.RegisterCustomerResponse = await self._unary("RegisterCustomer", req, timeout)
        return answer.customer.customer_id

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

    async def _unary(self, method: str, request: Message, timeout: float) -> Any:
        stub = self.stub
        if timeout < MIN_CALL_TIMEOUT_S:
            self.settle(method, "NO_TIME", None)
            raise CoreUnavailable(f"{method}: no time left in the budget to ask the core")
        if not self.breaker.allow():
            self.settle(method, "BREAKER_OPEN", None)
            raise CoreUnavailable(f"{method}: circuit breaker open after repeated core failures")
        try:
            response = await getattr(stub, method)(request, timeout=timeout, wait_for_ready=False)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            self.settle(method, code.name, code in BUSINESS_CODES)
            raise error_from(method, err) from None
        except asyncio.CancelledError:
            # Our caller gave up (its budget ran out): as good as a deadline miss.
            self.settle(method, "CANCELLED", False)
            raise
        except (grpc.aio.UsageError, grpc.RpcError) as err:  # channel closed under us
            self.settle(method, "CLIENT_ERROR", False)
            raise CoreUnavailable(f"{method}: {err}") from None
        self.settle(method, "OK", True)
        return response

    def settle(self, method: str, code: str, healthy: bool | None) -> None:
        """Count one call's outcome and tell the breaker: True a success, False a failure,
        None nothing (refused locally, or a stream that ended without proving either)."""
        if self.metrics is not None:
            self.metrics.child(self.metrics.core_calls, method, code).inc()
        if healthy is True:
            self.breaker.record_success()
        elif healthy is False:
            self.breaker.record_failure()
