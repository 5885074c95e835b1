"""Test doubles for the calc path over real sockets: a scripted gRPC fake core, a black-hole
TCP listener, a closed port, and self-signed TLS material made with the ``openssl`` CLI."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc

SERVER_NAME = "core.posgw.test"


@dataclass
class Failure:
    code: grpc.StatusCode
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    message: str = "scripted failure"


def default_calculation(req: pb.CalculateRequest) -> pb.CalculateResponse:
    """10 % discount on every line when points are requested, 5 % accrual, customer c1."""
    d = req.draft
    lines = []
    redeemed = 0
    for line in d.lines:
        disc = line.amount // 10 if (d.redeem_points or d.redeem_max) else 0
        redeemed += disc
        lines.append(
            pb.LineResult(line_id=line.line_id, discount=disc, paid=line.amount - disc, accrues=True)
        )
    paid = sum(x.paid for x in lines)
    cid = "c1" if d.HasField("customer") else ""
    return pb.CalculateResponse(
        customer_id=cid,
        lines=lines,
        gross=sum(x.amount for x in d.lines),
        max_points=500,
        redeemed_ordinary=redeemed // 100,
        payable=paid,
        points_to_accrue=paid // 2000 if cid else 0,
        tier="base",
        balance_before=1000,
        display_name="Анна К." if cid else "",
        hold_id="hold-1" if req.hold_ttl_s and redeemed else "",
    )


class FakeCore(pb_grpc.LoyaltyCoreServiceServicer):  # type: ignore[misc]
    """Scripted servicer: ``delay_s`` before answering, ``failures`` consumed one per call
    (then success), ``calc`` builds the answer. Records every request and peer."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.failures: list[Failure | None] = []  # consumed one per call; None = answer normally
        self.always_fail: Failure | None = None
        self.delays: list[float] = []  # consumed one per call before delay_s applies
        self.calc: Callable[[pb.CalculateRequest], pb.CalculateResponse] = default_calculation
        self.requests: list[tuple[str, Any]] = []
        self.peers: set[str] = set()
        self.program = pb.GetProgramResponse(program_id="p", version="v1", config_json="{}")
        self.balances: list[pb.BalanceEntry] = []
        self.customers: dict[str, pb.Customer] = {}

    async def _script(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.requests.append((name, request))
        self.peers.add(context.peer())
        delay = self.delays.pop(0) if self.delays else self.delay_s
        if delay:
            await asyncio.sleep(delay)
        failure = self.always_fail or (self.failures.pop(0) if self.failures else None)
        if failure is not None:
            await abort(context, failure)

    async def Calculate(
        self, request: pb.CalculateRequest, context: grpc.aio.ServicerContext
    ) -> pb.CalculateResponse:
        await self._script("Calculate", request, context)
        return self.calc(request)

    async def GetProgram(
        self, request: pb.GetProgramRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProgramResponse:
        await self._script("GetProgram", request, context)
        return self.program

    async def GetBalances(
        self, request: pb.GetBalancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalancesResponse:
        await self._script("GetBalances", request, context)
        size = request.page_size or 500
        start = int(request.page_token or 0)
        page = self.balances[start : start + size]
        nxt = str(start + size) if start + size < len(self.balances) else ""
        resp = pb.GetBalancesResponse(
            customers=page, next_page_token=nxt, program_version=self.program.version
        )
        resp.snapshot_at.GetCurrentTime()
        return resp

    async def IdentifyCustomer(
        self, request: pb.IdentifyCustomerRequest, context: grpc.aio.ServicerContext
    ) -> pb.IdentifyCustomerResponse:
        await self._script("IdentifyCustomer", request, context)
        key = request.customer.WhichOneof("id")
        value = getattr(request.customer, key) if key else ""
        if value not in self.customers:
            await abort(context, Failure(grpc.StatusCode.NOT_FOUND, "UNKNOWN_CUSTOMER"))
        return pb.IdentifyCustomerResponse(customer=self.customers[value])

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.requests if n == name)


async def abort(context: grpc.aio.ServicerContext, f: Failure) -> None:
    status = status_pb2.Status(code=f.code.value[0], message=f.message)
    if f.reason:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=f.reason, domain="loyalty.posgw", metadata=f.metadata))
        status.details.append(detail)
    await context.abort_with_status(rpc_status.to_status(status))


SERVER_OPTIONS = [
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
]


async def start_core(
    core: FakeCore, *, creds: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    pb_grpc.add_LoyaltyCoreServiceServicer_to_server(core, server)
    if creds is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    return server, port


def closed_port() -> int:
    """A port nobody listens on (bound, read back, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BlackHole:
    """Accepts TCP connections and never answers (a core behind a dead NAT / frozen host)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            try:
                while await reader.read(65536):
                    pass
            except (ConnectionError, asyncio.CancelledError):
                pass

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing we use


def make_tls(tmp: Path) -> TlsFiles:
    """A CA, a server certificate for SERVER_NAME and a client certificate, via ``openssl``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        import pytest

        pytest.skip("openssl CLI not available to make test certificates")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=tmp, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other"):
        run(
            "req",
            "-x509",
            *ec,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.pem",
            "-days",
            "2",
            "-subj",
            f"/CN=posgw {ca} test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )
    for who, ext in (
        ("server", f"subjectAltName=DNS:{SERVER_NAME}\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (tmp / f"{who}.ext").write_text(ext)
        run("req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={who}")
        run(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{who}.pem",
            "-days",
            "2",
            "-extfile",
            f"{who}.ext",
        )
    return TlsFiles(
        ca=tmp / "ca.pem",
        server_cert=tmp / "server.pem",
        server_key=tmp / "server.key",
        client_cert=tmp / "client.pem",
        client_key=tmp / "client.key",
        other_ca=tmp / "other.pem",
    )


def code_name_count(registry: Any, method: str, code: str) -> float:
    value = registry.get_sample_value("posgw_core_calls_total", {"method": method, "code": code})
    return float(value or 0.0)
