"""FaultProxy against a real TCP echo server: every mode, run-time switching, cut, stop."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from simulators.faults import FaultProxy, FaultSettings, Mode
from tests.simulators.faults.conftest import SteppedSleep

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(proxy: FaultProxy) -> Conn:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def roundtrip(conn: Conn, payload: bytes = b"ping", wait_s: float = 2.0) -> bytes:
    reader, writer = conn
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), wait_s)


async def assert_broken(conn: Conn) -> None:
    """The connection was reset / closed by the proxy: the next read ends, nothing echoes."""
    reader, writer = conn
    with contextlib.suppress(ConnectionError):
        writer.write(b"x")
        await writer.drain()
    with contextlib.suppress(ConnectionError):
        assert await asyncio.wait_for(reader.read(10), 2) == b""


async def test_pass_forwards_and_counts(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    assert await roundtrip(conn, b"hello" * 1000) == b"hello" * 1000
    stats = proxy.stats()
    assert (stats.connections_total, stats.connections_active) == (1, 1)
    assert stats.bytes_up == stats.bytes_down == 5000
    conn[1].close()


async def test_latency_then_switch_back_on_the_same_connection(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    await roundtrip(conn)
    await proxy.set_mode("latency", latency_ms=150)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await roundtrip(conn) == b"ping"
    assert loop.time() - t0 >= 0.3  # one delay each way
    await proxy.set_mode(Mode.PASS)
    t0 = loop.time()
    await roundtrip(conn)
    assert loop.time() - t0 < 0.15
    assert proxy.settings.latency_ms == 150  # kept for the next switch


async def test_latency_jitter_uses_injected_sleep(echo_port: int) -> None:
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    settings = FaultSettings(mode=Mode.LATENCY, latency_ms=100, jitter_ms=50)
    async with FaultProxy("127.0.0.1", 0, "127.0.0.1", echo_port, settings=settings, sleep=record) as p:
        await roundtrip(await connect(p))
    assert len(sleeps) == 2
    assert all(0.1 <= s <= 0.15 for s in sleeps)


async def test_refuse_resets_new_connections_keeps_old_ones(proxy: FaultProxy) -> None:
    old = await connect(proxy)
    await proxy.set_mode("refuse")
    new = await connect(proxy)  # the kernel accepts; the proxy resets at once
    await assert_broken(new)
    assert await roundtrip(old) == b"ping"
    assert proxy.stats().refused == 1
    await proxy.set_mode("pass")
    assert await roundtrip(await connect(proxy)) == b"ping"


async def test_down_refuses_at_tcp_level_then_comes_back_on_the_same_port(proxy: FaultProxy) -> None:
    old = await connect(proxy)
    port = proxy.port
    await proxy.set_mode("down")
    with pytest.raises(ConnectionRefusedError):
        await connect(proxy)
    assert await roundtrip(old) == b"ping"
    await proxy.set_mode("pass")
    assert proxy.port == port
    assert await roundtrip(await connect(proxy)) == b"ping"


async def test_blackhole_stalls_both_ways_and_resumes_intact(proxy: FaultProxy) -> None:
    old = await connect(proxy)
    await proxy.set_mode("blackhole")
    old[1].write(b"held")
    new = await connect(proxy)  # accepted, never reaches the upstream
    new[1].write(b"also")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(old[0].readexactly(4), 0.2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(new[0].readexactly(4), 0.05)
    assert proxy.stats().bytes_up == 0
    await proxy.set_mode("pass")
    assert await asyncio.wait_for(old[0].readexactly(4), 2) == b"held"
    assert await asyncio.wait_for(new[0].readexactly(4), 2) == b"also"


async def test_cut_resets_current_connections_only(proxy: FaultProxy) -> None:
    a, b = await connect(proxy), await connect(proxy)
    await roundtrip(a)
    await roundtrip(b)
    assert await proxy.cut() == 2
    await assert_broken(a)
    await assert_broken(b)
    assert proxy.mode is Mode.PASS
    assert await roundtrip(await connect(proxy)) == b"ping"
    await proxy.set_mode("cut")  # the same, through set_mode
    stats = proxy.stats()
    assert (stats.cuts, stats.cut_connections) == (2, 3)


async def test_flap_alternates_pass_and_outage(echo_port: int) -> None:
    sleep = SteppedSleep()
    async with FaultProxy("127.0.0.1", 0, "127.0.0.1", echo_port, sleep=sleep) as p:
        await p.set_mode("flap", flap_ms=300, flap_down_ms=100)
        assert await sleep.next() == 0.3
        conn = await connect(p)
        assert await roundtrip(conn) == b"ping"
        await sleep.release()  # up phase over: cut, outage begins
        assert p.flap_phase == "down"
        await assert_broken(conn)
        await assert_broken(await connect(p))
        assert await sleep.next() == 0.1
        await sleep.release()  # outage over
        assert p.flap_phase == "up"
        assert await roundtrip(await connect(p)) == b"ping"
        await p.set_mode("pass")  # stops flapping
        assert p.flap_phase == "up"
        assert p.stats().cuts == 1


async def test_upstream_unreachable_closes_client(echo_port: int) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with FaultProxy("127.0.0.1", 0, "127.0.0.1", dead_port) as p:
        await assert_broken(await connect(p))
        assert p.stats().upstream_failures == 1


async def test_buffers_are_bounded_when_the_upstream_does_not_read() -> None:
    stalled: list[asyncio.StreamWriter] = []

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.append(writer)

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with FaultProxy("127.0.0.1", 0, "127.0.0.1", port) as p:
        _, writer = await connect(p)
        chunk = b"x" * (1 << 20)
        sent = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while sent < 256 * len(chunk):
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
        assert sent < 256 * len(chunk), "writer never back-pressured"
        assert p.stats().bytes_up < 64 * (1 << 20)
        writer.close()
    server.close()


async def test_stop_resets_connections_and_closes_the_port(echo_port: int) -> None:
    p = FaultProxy("127.0.0.1", 0, "127.0.0.1", echo_port)
    await p.start()
    conn = await connect(p)
    await roundtrip(conn)
    await p.set_mode("blackhole")
    held = await connect(p)  # waiting in the blackhole: stop must not hang on it
    await asyncio.sleep(0.01)
    await asyncio.wait_for(p.stop(), 5)
    await assert_broken(conn)
    await assert_broken(held)
    assert p.stats().connections_active == 0
    with pytest.raises(ConnectionRefusedError):
        await connect(p)
    await p.stop()  # idempotent


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        FaultSettings(latency_ms=-1)
    with pytest.raises(ValueError, match="mode"):
        FaultSettings.from_json({"mode": "explode"})
    with pytest.raises(ValueError, match="latncy_ms"):
        FaultSettings.from_json({"mode": "latency", "latncy_ms": 5})
    with pytest.raises(ValueError, match="flap_ms"):
        FaultSettings.from_json({"mode": "flap", "flap_ms": 0})
    base = FaultSettings(flap_ms=250)
    assert FaultSettings.from_json({"mode": "flap"}, base=base) == FaultSettings(Mode.FLAP, flap_ms=250)


async def test_starting_down_knows_its_port_and_comes_up(echo_port: int) -> None:
    async with FaultProxy("127.0.0.1", 0, "127.0.0.1", echo_port, settings=FaultSettings(Mode.DOWN)) as p:
        assert p.port != 0 and p.mode is Mode.DOWN
        with pytest.raises(ConnectionRefusedError):
            await connect(p)
        await p.set_mode("pass")
        assert await roundtrip(await connect(p)) == b"ping"
