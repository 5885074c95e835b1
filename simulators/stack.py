"""The whole system on 127.0.0.1 as real processes: reference core, fault proxy, gateway.

Used by ``posgw demo``, the end-to-end tests (``tests/e2e``) and ``bench/gateway_bench.py``.

Owns:
- :class:`Service`: one child process (``sys.executable -m gateway.cli ...`` or any argv) with
  start, SIGTERM stop (SIGKILL after a timeout), SIGKILL, restart, and readiness polling
  bounded by a timeout; output goes to a log file in the work dir (appended across restarts)
  whose tail is quoted when the process dies or never becomes ready;
- :class:`Stack`: core process → :class:`~simulators.faults.FaultProxy` (in this process) →
  gateway process with a generated TOML config (native driver on, outbox and offline
  snapshots in the work dir, short refresh intervals); ports are allocated once, so a restarted
  process comes back on the same address;
- readiness: gRPC health ``SERVING`` for the core, ``/healthz`` 200 for the gateway.

The admin client and the exactly-once check live in :mod:`simulators.stack_check`.
Invariant: every process this module starts is stopped by :meth:`Stack.close` (or killed),
and every wait has a timeout. Simulators never import ``drivers``: the gateway is a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from simulators.faults import FaultProxy
from simulators.stack_check import AppliedOps, CoreAdmin, read_applied

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROGRAM = ROOT / "config" / "programs" / "seed002.toml"
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (bind to 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class StackError(RuntimeError):
    """A process of the stack died or did not become ready; the message quotes its log."""


class Service:
    """One child process with a readiness probe; restartable with the same argv."""

    def __init__(self, name: str, argv: list[str], log_path: Path,
                 ready: Callable[[], Awaitable[bool]], *, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path, self._ready = name, argv, log_path, ready
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def start(self, *, wait: bool = True, timeout_s: float = 30.0) -> None:
        if self.running:
            raise StackError(f"{self.name} is already running (pid {self.pid})")
        log = self.log_path.open("ab")  # a local file, opened once per start
        with log:
            log.write(f"--- start #{self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                cwd=str(ROOT),
            )
        self.starts += 1
        if wait:
            await self.wait_ready(timeout_s)

    async def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Poll the probe until it says ready; returns seconds waited. Raises StackError."""
        began = time.monotonic()
        while True:
            if not self.running:
                code = None if self.proc is None else self.proc.returncode
                raise StackError(f"{self.name} exited (status {code}) before ready:\n{self.log_tail()}")
            with contextlib.suppress(Exception):  # any probe failure means "not yet"
                if await self._ready():
                    return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                raise StackError(f"{self.name} not ready after {timeout_s:g} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns the exit status."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return None if proc is None else proc.returncode
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            return await self.kill()

    async def kill(self) -> int | None:
        """SIGKILL (``kill -9``) and reap."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        return await asyncio.wait_for(proc.wait(), 10.0)

    async def restart(self, *, kill: bool = False, timeout_s: float = 30.0) -> None:
        await (self.kill() if kill else self.stop())
        await self.start(timeout_s=timeout_s)


async def grpc_serving(address: str, timeout_s: float = 1.0) -> bool:
    """True when the gRPC health service at ``address`` answers SERVING."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        async with session.get(url) as resp:
            return resp.status == 200


@dataclass(frozen=True)
class StackOptions:
    """What the stack runs; the defaults suit the demo and the e2e tests."""

    program: Path = DEFAULT_PROGRAM
    api_key: str = "stack-till-key"
    admin_key: str = "stack-admin-key"
    calc_budget_ms: int = 300
    hold_ttl_s: int = 0  # > 0: the core reserves redeemed points between calculate and commit
    offline_redeem_limit: int = 0
    refresh_s: float = 1.0  # program and balance snapshot refresh, for offline answers
    breaker_failures: int = 3
    breaker_reset_s: float = 1.0
    log_level: str = "WARNING"
    through_proxy: bool = True  # False: the gateway talks to the core directly
    core_argv: list[str] | None = None  # another core (bench: ack-only); {port} is substituted
    extra_toml: str = ""
    gateway_extra: str = ""  # more lines of the [gateway] table (e.g. "max_requests_in_flight = 32")
    ready_timeout_s: float = 40.0
    env: dict[str, str] = field(default_factory=dict)


class Stack:
    """Core + fault proxy + gateway in ``workdir``. ``async with Stack(dir) as stack: ...``."""

    def __init__(self, workdir: Path, options: StackOptions | None = None) -> None:
        self.workdir = workdir
        self.options = opts = options or StackOptions()
        self.core_port = free_port()
        self.gateway_port = free_port()
        self.core_db = workdir / "core.db"
        self.gateway_dir = workdir / "gateway"
        self.config_path = workdir / "posgw.toml"
        self.proxy = FaultProxy(HOST, 0, HOST, self.core_port)
        py = [sys.executable, "-m", "gateway.cli"]
        core_argv = [a.replace("{port}", str(self.core_port)) for a in opts.core_argv] if opts.core_argv \
            else [*py, "core", "--listen", self.core_address, "--program", str(opts.program),
                  "--db", f"sqlite:///{self.core_db}", "--log-level", opts.log_level]
        self.core = Service("core", core_argv, workdir / "core.log",
                            lambda: grpc_serving(self.core_address), env=opts.env)
        self.gateway = Service("gateway", [*py, "run", "--config", str(self.config_path)],
                               workdir / "gateway.log", lambda: http_ok(self.gateway_url + "/healthz"),
                               env=opts.env)
        self.admin = CoreAdmin(self.core_address)

    @property
    def core_address(self) -> str:
        return f"{HOST}:{self.core_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.gateway_port}"

    @property
    def gateway_core_address(self) -> str:
        return self.proxy.address if self.options.through_proxy else self.core_address

    def gateway_toml(self) -> str:
        o = self.options
        return f"""# written by simulators.stack
[gateway]
listen_host = "{HOST}"
listen_port = {self.gateway_port}
data_dir = "{self.gateway_dir}"
calc_budget_ms = {o.calc_budget_ms}
hold_ttl_s = {o.hold_ttl_s}
shutdown_timeout_s = 8.0
log_level = "{o.log_level}"
admin_api_key = "{o.admin_key}"
{o.gateway_extra}

[core]
address = "{self.gateway_core_address}"
breaker_failures = {o.breaker_failures}
breaker_reset_s = {o.breaker_reset_s}
refresh_interval_s = {o.refresh_s}

[offline]
redeem_limit_points = {o.offline_redeem_limit}
snapshot_refresh_s = {o.refresh_s}

[outbox]
stuck_after_s = 3600.0

[drivers.native]
enabled = true
api_keys = ["{o.api_key}"]
{o.extra_toml}
"""

    async def start(self, *, gateway: bool = True) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self.proxy.start()  # first: the config names its port
        self.config_path.write_text(self.gateway_toml(), encoding="utf-8")
        core_start = self.core.start(timeout_s=self.options.ready_timeout_s)
        if gateway:  # both start in parallel: the gateway copes with a core not up yet
            await asyncio.gather(core_start, self.gateway.start(timeout_s=self.options.ready_timeout_s))
        else:
            await core_start

    async def close(self) -> None:
        try:
            await asyncio.gather(self.gateway.stop(), self.core.stop())
        finally:
            await self.admin.close()
            await self.proxy.stop()

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- faults ----------------------------------------------------------------------------

    async def core_outage(self) -> None:
        """The link to the core goes down: new connections refused, live ones reset."""
        await self.proxy.set_mode("down")
        await self.proxy.cut()

    async def core_back(self) -> None:
        await self.proxy.set_mode("pass")

    async def restart_gateway(self, *, kill: bool = False) -> float:
        """SIGTERM (or SIGKILL) the gateway, start it again; returns seconds until ready."""
        began = time.monotonic()
        await self.gateway.restart(kill=kill, timeout_s=self.options.ready_timeout_s)
        return time.monotonic() - began

    async def restart_core(self, *, kill: bool = False) -> None:
        await self.core.restart(kill=kill, timeout_s=self.options.ready_timeout_s)

    # -- observation -----------------------------------------------------------------------

    async def _get_json(self, path: str, timeout_s: float = 5.0) -> Any:
        headers = {"Authorization": f"Bearer {self.options.admin_key}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            async with session.get(self.gateway_url + path, headers=headers) as resp:
                return await resp.json()

    async def health(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._get_json("/healthz")
        return data

    async def operator_queue(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = await self._get_json("/v1/queue")
        return data

    async def metrics(self, timeout_s: float = 5.0) -> dict[str, float]:
        """The gateway's /metrics as {"name{label=value,...}": value}."""
        from prometheus_client.parser import text_string_to_metric_families

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            async with session.get(self.gateway_url + "/metrics") as resp:
                text = await resp.text()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
        return out

    async def wait_drained(self, timeout_s: float = 30.0) -> int:
        """Wait until the gateway's outbox has nothing pending; returns what is still pending."""
        deadline = time.monotonic() + timeout_s
        pending = -1
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # a gateway mid-restart: try again
                pending = int((await self.health()).get("pending", -1))
                if pending == 0:
                    return 0
            await asyncio.sleep(0.1)
        return pending

    def applied(self) -> AppliedOps:
        """What the reference core has applied (read from its SQLite file)."""
        return read_applied(self.core_db)


@contextlib.asynccontextmanager
async def running_stack(options: StackOptions | None = None, *, keep: bool = False,
                        **changes: Any) -> AsyncIterator[Stack]:
    """A started :class:`Stack` in a temp dir for the duration of the block."""
    opts = replace(options or StackOptions(), **changes)
    tmp = tempfile.mkdtemp(prefix="posgw-stack-")
    stack = Stack(Path(tmp), opts)
    async with stack:
        yield stack
    if not keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
