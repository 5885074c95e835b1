"""FaultProxy in front of a real grpc.aio echo service: HTTP/2 passes through, and each fault
surfaces as the gRPC status a client with deadlines should see."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from simulators.faults import FaultProxy
from tests.simulators.faults.conftest import GRPC_OPTIONS


@pytest.fixture
async def channel(grpc_proxy: FaultProxy) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(grpc_proxy.address, options=GRPC_OPTIONS) as ch:
        yield ch


async def echo(channel: grpc.aio.Channel, payload: bytes = b"hi", deadline: float = 2.0) -> bytes:
    method = channel.unary_unary("/test.Echo/Echo", None, None)
    result: bytes = await method(payload, timeout=deadline)
    return result


async def status_of(
    channel: grpc.aio.Channel, payload: bytes = b"hi", deadline: float = 2.0
) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await echo(channel, payload, deadline)
    return err.value.code()


async def eventually_ok(channel: grpc.aio.Channel, within: float = 5.0) -> None:
    """After an outage the channel reconnects with backoff: the call succeeds soon."""
    async with asyncio.timeout(within):
        while True:
            try:
                assert await echo(channel, deadline=1.0) == b"hi"
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)


async def test_pass_carries_http2(channel: grpc.aio.Channel, grpc_proxy: FaultProxy) -> None:
    assert await echo(channel, b"x" * 100_000) == b"x" * 100_000
    assert grpc_proxy.stats().bytes_up > 100_000


async def test_latency_beyond_the_deadline_is_deadline_exceeded(
    channel: grpc.aio.Channel, grpc_proxy: FaultProxy
) -> None:
    await echo(channel)
    await grpc_proxy.set_mode("latency", latency_ms=300)
    assert await status_of(channel, deadline=0.2) == grpc.StatusCode.DEADLINE_EXCEEDED
    await grpc_proxy.set_mode("pass")
    await eventually_ok(channel)


@pytest.mark.parametrize("mode", ["down", "refuse"])
async def test_down_and_refuse_give_unavailable(grpc_proxy: FaultProxy, mode: str) -> None:
    await grpc_proxy.set_mode(mode)
    async with grpc.aio.insecure_channel(grpc_proxy.address, options=GRPC_OPTIONS) as ch:
        assert await status_of(ch, deadline=3.0) == grpc.StatusCode.UNAVAILABLE
        await grpc_proxy.set_mode("pass")
        await eventually_ok(ch)


async def test_blackhole_gives_deadline_exceeded(channel: grpc.aio.Channel, grpc_proxy: FaultProxy) -> None:
    await echo(channel)
    await grpc_proxy.set_mode("blackhole")
    assert await status_of(channel, deadline=0.3) == grpc.StatusCode.DEADLINE_EXCEEDED
    async with grpc.aio.insecure_channel(grpc_proxy.address, options=GRPC_OPTIONS) as fresh:
        assert await status_of(fresh, deadline=0.3) == grpc.StatusCode.DEADLINE_EXCEEDED
        await grpc_proxy.set_mode("pass")
        await eventually_ok(fresh)
    await eventually_ok(channel)


async def test_cut_fails_the_call_in_flight_then_reconnects(
    channel: grpc.aio.Channel, grpc_proxy: FaultProxy
) -> None:
    await echo(channel)
    in_flight = asyncio.create_task(status_of(channel, b"sleep:3", deadline=5.0))
    await asyncio.sleep(0.2)
    assert await grpc_proxy.cut() == 1
    assert await asyncio.wait_for(in_flight, 2) == grpc.StatusCode.UNAVAILABLE
    await eventually_ok(channel)


async def test_flap_gives_successes_and_failures(channel: grpc.aio.Channel, grpc_proxy: FaultProxy) -> None:
    await grpc_proxy.set_mode("flap", flap_ms=150, flap_down_ms=150)
    outcomes: set[str] = set()
    async with asyncio.timeout(10):
        while len(outcomes) < 2:
            try:
                await echo(channel, deadline=0.2)
                outcomes.add("ok")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                outcomes.add("failed")
            await asyncio.sleep(0.02)
    assert grpc_proxy.stats().cuts >= 1
