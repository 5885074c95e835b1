"""The real gateway for the driver compliance suite: a :class:`gateway.daemon.Daemon` with one driver.

:func:`running` starts a stub loyalty core (a real ``grpc.aio`` server on 127.0.0.1:0 that
answers Calculate with no discount and acknowledges every streamed event) or, for the offline
case, points the daemon at a closed port; then the real Daemon (CoreClient, Outbox on SQLite in
``tmp_path``, Sender, Pipeline, aiohttp server from :func:`gateway.server.build_app`) with only
the driver under test enabled, configured from the adapter's options through
:func:`gateway.config.parse_config` (the same path as ``posgw run``). Requests go over a real
socket with aiohttp.

:meth:`Gateway.rows` reads the outbox file directly (read-only SQLite; WAL lets it run beside
the writer): every stored row whatever its delivery state, so "stored once" does not depend on
whether the sender already delivered it.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from gateway.calc_token import CalcTokens
from gateway.config import parse_config
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.daemon import Daemon, Notifier
from gateway.driver import CalcClaims
from gateway.metrics import Metrics
from gateway.payload import event_from_json
from gateway.receipt import CustomerId, Event
from tests.gateway.fake_core import ack_all


@dataclass(frozen=True)
class Request:
    """One HTTP request a till / plugin / cloud would send (path relative to ``/v1/<driver>``)."""

    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    note: str = ""  # what this request exercises (shown in assertion messages)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class StubCore(pb_grpc.LoyaltyCoreServiceServicer):
    """A minimal core: Calculate gives no discount; StreamEvents acknowledges every event."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.calculations = 0

    async def Calculate(self, request: pb.CalculateRequest, context: Any) -> pb.CalculateResponse:
        self.calculations += 1
        lines = [pb.LineResult(line_id=x.line_id, discount=0, paid=x.amount, accrues=True)
                 for x in request.draft.lines]
        return pb.CalculateResponse(customer_id="cus-1", lines=lines, payable=sum(x.paid for x in lines),
                              points_to_accrue=0, tier="base", balance_before=0, balance_after=0,
                              display_name="Test")

    async def StreamEvents(self, request_iterator: Any,
                           context: Any) -> AsyncIterator[pb.StreamEventsResponse]:
        async for reply in ack_all(request_iterator, self.delivered):  # grpc.aio wants an async generator
            yield reply


TOKEN_KEY = bytes(range(32))  # the calc token key of every compliance gateway
TOKENS = CalcTokens(TOKEN_KEY)


def calc_token(*, hold_id: str = "", redeemed: int = 0, discount: int = 0, offline: bool = False,
               customer: CustomerId | None = None, register_id: str = "") -> str:
    """A calc token the compliance gateway accepts (as if it had answered that calculate)."""
    return TOKENS.issue(CalcClaims(customer=customer, redeemed=redeemed, discount=discount, hold_id=hold_id,
                                   offline=offline, program_version="", register_id=register_id))


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, read back, closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """A running daemon with one driver, and a client session to talk to it."""

    def __init__(self, daemon: Daemon, session: aiohttp.ClientSession, name: str, core: StubCore | None):
        self.daemon = daemon
        self.session = session
        self.name = name
        self.core = core
        self.base = f"http://127.0.0.1:{daemon.port}"
        self.stopped = False  # set by a test that stopped the daemon itself

    @property
    def outbox_path(self) -> Path:
        return self.daemon.config.outbox_path

    async def send(self, req: Request) -> Reply:
        url = f"{self.base}/v1/{self.name}{req.path}"
        async with self.session.request(req.method, url, data=req.body, headers=req.headers) as resp:
            return Reply(resp.status, await resp.read(), dict(resp.headers))

    async def get(self, path: str) -> Reply:
        async with self.session.get(f"{self.base}{path}") as resp:
            return Reply(resp.status, await resp.read(), dict(resp.headers))

    def rows(self) -> list[tuple[str, str]]:
        """(key, state) of every row in the outbox file, in append order."""
        return read_rows(self.outbox_path)


def read_rows(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [(str(k), str(s)) for k, s in conn.execute("SELECT key, state FROM events ORDER BY id")]
    finally:
        conn.close()


def stored_events(path: Path) -> list[Event]:
    """Every event stored in the outbox file, decoded, in append order."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT payload FROM events ORDER BY id")
        return [event_from_json(bytes(raw)) for (raw,) in rows]
    finally:
        conn.close()


@asynccontextmanager
async def stub_core() -> AsyncIterator[tuple[StubCore, int]]:
    server = grpc.aio.server()
    core = StubCore()
    pb_grpc.add_LoyaltyCoreServiceServicer_to_server(core, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield core, port
    finally:
        await server.stop(grace=None)


def gateway_config(name: str, options: dict[str, Any], data_dir: Path, core_port: int,
                   gateway: dict[str, Any] | None = None) -> Any:
    raw = {
        "gateway": {"listen_port": 0, "data_dir": str(data_dir), "calc_budget_ms": 1000,
                    "shutdown_timeout_s": 5.0, **(gateway or {})},
        "core": {"address": f"127.0.0.1:{core_port}", "refresh_interval_s": 3600.0},
        "offline": {"snapshot_refresh_s": 3600.0},
        "drivers": {name: {"enabled": True, **options}},
    }
    return parse_config(raw, file="<compliance>", environ={}, base_dir=data_dir)


@asynccontextmanager
async def running(name: str, options: dict[str, Any], tmp_path: Path, *, online: bool = True,
                  gateway: dict[str, Any] | None = None) -> AsyncIterator[Gateway]:
    """The daemon with driver ``name`` enabled (``gateway``: more [gateway] settings); stopped
    (if the test did not) on exit."""
    async with _core(online) as (core, port):
        data_dir = tmp_path / "data"
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_file = data_dir / "calc_token.key"
        key_file.write_bytes(TOKEN_KEY)  # so adapters can bring real tokens
        key_file.chmod(0o600)  # as the gateway writes it: a 0644 key is tightened with a WARNING
        config = gateway_config(name, options, data_dir, port, gateway)
        daemon = Daemon(config, metrics=Metrics(), notifier=Notifier(environ={}))
        await daemon.start()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        gw = Gateway(daemon, session, name, core)
        try:
            yield gw
        finally:
            await session.close()
            if not gw.stopped:
                await daemon.stop(timeout=5.0)


@asynccontextmanager
async def _core(online: bool) -> AsyncIterator[tuple[StubCore | None, int]]:
    if not online:
        yield None, closed_port()
        return
    async with stub_core() as (core, port):
        yield core, port


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a test helper
    """Poll ``predicate()`` (cheap, synchronous) until true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
