"""Running the reference core: the grpc.aio server, health service, graceful stop, test helpers.

- :func:`start_core` builds storage (schema created / upgraded), the service and a started
  server; :class:`CoreHandle` stops it gracefully (health NOT_SERVING first, in-flight RPCs
  get ``STOP_GRACE_S`` to finish) and disposes the engine.
- :func:`serve` is what ``posgw core`` runs: one log line with the listen address, then
  serve until SIGTERM / SIGINT.
- :func:`running_core` (async context manager) and :func:`serve_in_thread` (for synchronous
  code) start a core on 127.0.0.1:0 and yield "127.0.0.1:PORT" for tests.

Messages larger than ``MAX_MESSAGE`` are refused by gRPC with RESOURCE_EXHAUSTED.

Server reflection is on (``grpcurl -plaintext HOST:PORT list`` / ``describe`` work without the
proto file).

Replicas: any number of cores may serve one PostgreSQL database (see docs/CORE-SCALE.md); every
answer's initial metadata names the replica that gave it (``posgw-core-replica``: the
``POSGW_CORE_REPLICA`` environment variable, else host:pid), for operators and balancing tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.rules.program import Program, load_program
from simulators.core import sms
from simulators.core.context import Clock, Core, system_clock
from simulators.core.db import Database
from simulators.core.schema import SchemaError
from simulators.core.service import LoyaltyCoreService
from simulators.core.sms import SmsSender

log = logging.getLogger("posgw.core")
MAX_MESSAGE = 4 * 1024 * 1024
STOP_GRACE_S = 5.0
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LoyaltyCoreService"].full_name
REPLICA_METADATA = "posgw-core-replica"


def min_ping_interval_ms() -> int:
    """The shortest keepalive ping interval accepted from a client (default 10 s)."""
    raw = os.environ.get("POSGW_CORE_MIN_PING_INTERVAL_MS", "").strip()
    if not raw:
        return 10_000
    if not raw.isdigit() or not 100 <= int(raw) <= 3_600_000:
        raise ValueError(f"POSGW_CORE_MIN_PING_INTERVAL_MS={raw!r}: give milliseconds, 100 to 3600000")
    return int(raw)


def replica_name() -> str:
    return os.environ.get("POSGW_CORE_REPLICA") or f"{socket.gethostname()}:{os.getpid()}"


class ReplicaTag(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Sends ``posgw-core-replica`` as initial metadata of every unary call and stream."""

    def __init__(self, name: str) -> None:
        self.tag = ((REPLICA_METADATA, name),)

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        tag = self.tag
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def tagged_unary(request: Any, context: Any) -> Any:
                await context.send_initial_metadata(tag)
                return await unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                tagged_unary, handler.request_deserializer, handler.response_serializer)
        if handler.stream_stream is not None:
            stream = handler.stream_stream

            async def tagged_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
                await context.send_initial_metadata(tag)
                async for answer in stream(requests, context):
                    yield answer

            return grpc.stream_stream_rpc_method_handler(
                tagged_stream, handler.request_deserializer, handler.response_serializer)
        return handler


@dataclass
class CoreHandle:
    server: grpc.aio.Server
    core: Core
    health: Any  # grpc_health.v1.health.aio.HealthServicer
    address: str

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await asyncio.to_thread(self.core.db.dispose)


def as_program(program: Program | str | Path) -> Program:
    return program if isinstance(program, Program) else load_program(program)


async def start_core(
    program: Program | str | Path, db_url: str, listen: str = "127.0.0.1:0", now: Clock | None = None,
    sender: SmsSender | None = None,
) -> CoreHandle:
    """Open storage, start the gRPC server on ``listen`` and return its handle. ``sender``: how
    confirmation codes are texted (default: from the environment, :func:`sms.from_environ`)."""
    prog = as_program(program)
    sender = sender or sms.from_environ(os.environ)
    db = await asyncio.to_thread(Database, db_url)
    core = Core(db=db, program=prog, clock=now or system_clock, sender=sender)
    server = grpc.aio.server(
        interceptors=[ReplicaTag(replica_name())],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
            # the gateway's client pings every 30 s even when idle: allow it (no too_many_pings);
            # gateways tuned to find a dead replica sooner need POSGW_CORE_MIN_PING_INTERVAL_MS lower
            ("grpc.http2.min_ping_interval_without_data_ms", min_ping_interval_ms()),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    )
    pb_grpc.add_LoyaltyCoreServiceServicer_to_server(LoyaltyCoreService(core), server)  # type: ignore[no-untyped-call]
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # server reflection: grpcurl and other tools list and call the API without the .proto
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server)
    try:  # grpc raises RuntimeError on a busy or unusable address (older versions returned 0)
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        db.dispose()
        raise OSError(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        db.dispose()
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = listen.rsplit(":", 1)[0]
    return CoreHandle(server=server, core=core, health=health_servicer, address=f"{host}:{port}")


async def serve(listen: str, program: Program | str | Path, db_url: str, now: Clock | None = None) -> None:
    """Serve until SIGTERM / SIGINT, then stop gracefully. An SMS provider set up wrongly in the
    environment stops the start with one line saying what to set (no traceback); so do a database
    schema this core cannot use and a bad POSGW_CORE_DB_* / POSGW_CORE_MIN_PING_INTERVAL_MS."""
    try:
        sender = sms.from_environ(os.environ)
    except ValueError as exc:
        raise SystemExit(f"posgw core: {exc}") from None
    try:
        handle = await start_core(program, db_url, listen, now, sender)
    except (SchemaError, ValueError) as exc:
        raise SystemExit(f"posgw core: {exc}") from None
    # everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes (they walked SQLAlchemy's and protobuf's objects on every gen-2 collection)
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no signal handlers
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "core listening address=%s program=%s version=%s",
        handle.address,
        handle.core.program.id,
        handle.core.version[:12],
    )
    try:
        await stop.wait()
    finally:
        log.info("core stopping address=%s", handle.address)
        await handle.stop()


@contextlib.asynccontextmanager
async def running_core(
    program: Program | str | Path, db_url: str, now: Clock | None = None
) -> AsyncIterator[str]:
    """A core on 127.0.0.1:0 for the duration of the block; yields "127.0.0.1:PORT"."""
    handle = await start_core(program, db_url, "127.0.0.1:0", now)
    try:
        yield handle.address
    finally:
        await handle.stop(grace=1.0)


@contextlib.asynccontextmanager
async def running_core_handle(
    program: Program | str | Path, db_url: str, now: Clock | None = None, sender: SmsSender | None = None,
) -> AsyncIterator[CoreHandle]:
    """Like :func:`running_core` but yields the handle (address, core, server)."""
    handle = await start_core(program, db_url, "127.0.0.1:0", now, sender)
    try:
        yield handle
    finally:
        await handle.stop(grace=1.0)


@contextlib.contextmanager
def serve_in_thread(
    program: Program | str | Path, db_url: str, now: Clock | None = None, timeout: float = 30.0
) -> Iterator[str]:
    """A core in its own thread and event loop, for synchronous callers; yields the address."""
    loop = asyncio.new_event_loop()
    started: list[CoreHandle] = []
    failed: list[BaseException] = []
    ready = threading.Event()

    async def main() -> None:
        try:
            started.append(await start_core(program, db_url, "127.0.0.1:0", now))
        except BaseException as exc:  # reported to the caller below
            failed.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=loop.run_forever, name="posgw-core", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(main(), loop)
    if not ready.wait(timeout):
        raise TimeoutError("the core did not start in time")
    try:
        if failed:
            raise failed[0]
        yield started[0].address
    finally:
        if started:
            asyncio.run_coroutine_threadsafe(started[0].stop(grace=1.0), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()
