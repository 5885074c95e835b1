"""Mirror of simulators.faults.scenarios.common: HTTP/2 frame splitting, the GOAWAY frame, and the
ScenarioProxy's lost replies and GOAWAY injection over real sockets (a fake HTTP/2 server)."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from simulators.faults.scenarios.common import ScenarioProxy, goaway_frame, split_frames


def frame(kind: int, payload: bytes, stream: int = 1) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, 0]) + struct.pack(">I", stream) + payload


def test_goaway_frame_layout() -> None:
    f = goaway_frame()
    assert len(f) == 17 and f[:3] == b"\x00\x00\x08" and f[3] == 7 and f[5:9] == b"\x00\x00\x00\x00"
    assert struct.unpack(">II", f[9:]) == (0x7FFFFFFF, 0)
    assert struct.unpack(">II", goaway_frame(5, 2)[9:]) == (5, 2)


def test_split_frames_keeps_partial_frames_back() -> None:
    a, b = frame(0, b"hello"), frame(1, b"x" * 20, 3)
    assert split_frames(a + b) == (a + b, b"")
    assert split_frames(a + b[:4]) == (a, b[:4])
    assert split_frames(a + b[:12]) == (a, b[:12])
    assert split_frames(b"") == (b"", b"")


async def test_lost_replies_and_goaway_over_real_sockets() -> None:
    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(100):
                writer.write(frame(0, data))  # answer every request with one DATA frame
                await writer.drain()

    upstream = await asyncio.start_server(server, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    async with ScenarioProxy("127.0.0.1", 0, "127.0.0.1", port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(13), 2) == frame(0, b"ping")
        await proxy.lose_replies()
        writer.write(b"lost")
        await asyncio.sleep(0.2)
        assert proxy.dropped_bytes == 13
        await proxy.replies_back()  # cuts the half-dropped connection (RST)
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"hi")
        assert await asyncio.wait_for(reader.readexactly(11), 2) == frame(0, b"hi")
        assert await proxy.goaway(grace_s=0.1) == 1
        assert await asyncio.wait_for(reader.readexactly(17), 2) == goaway_frame()
        assert proxy.goaways_sent == 1
        writer.close()
    upstream.close()
    await upstream.wait_closed()
