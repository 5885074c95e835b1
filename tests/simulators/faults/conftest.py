"""Fixtures: a real TCP echo server, a real grpc.aio echo service, a proxy in front of each,
and a step-controlled sleep for deterministic flap tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from simulators.faults import FaultProxy

GRPC_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 100),
    ("grpc.enable_retries", 0),
]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def proxy(echo_port: int) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", 0, "127.0.0.1", echo_port) as p:
        yield p


async def _grpc_echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    if request.startswith(b"sleep:"):
        await asyncio.sleep(float(request[6:]))
    return request


@pytest.fixture
async def grpc_port() -> AsyncIterator[int]:
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_grpc_echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(grace=None)


@pytest.fixture
async def grpc_proxy(grpc_port: int) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", 0, "127.0.0.1", grpc_port) as p:
        yield p


class SteppedSleep:
    """An injectable ``sleep``: each call blocks until the test releases it."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((seconds, fut))
        self._arrived.set()
        await fut

    async def next(self) -> float:
        """Wait for the next sleeper; return what it asked for (without releasing it)."""
        async with asyncio.timeout(5):
            while not self.pending:
                self._arrived.clear()
                await self._arrived.wait()
        return self.pending[0][0]

    async def release(self) -> None:
        await self.next()
        _, fut = self.pending.pop(0)
        fut.set_result(None)
        for _ in range(5):  # let the woken task run
            await asyncio.sleep(0)
