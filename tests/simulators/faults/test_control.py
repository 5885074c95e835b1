"""The HTTP control endpoint, its client, and ``posgw sim faults`` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from simulators.faults import ControlServer, FaultControlClient, FaultProxy, Mode

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def control(proxy: FaultProxy) -> AsyncIterator[ControlServer]:
    server = ControlServer(proxy)
    await server.start()
    yield server
    await server.stop()


async def test_get_and_post_mode(proxy: FaultProxy, control: ControlServer) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(control.url + "/mode") as resp:
            state = await resp.json()
        assert state["mode"] == "pass"
        assert state["listen"] == proxy.address
        assert state["stats"]["connections_total"] == 0
        async with http.post(control.url + "/mode", json={"mode": "latency", "latency_ms": 200}) as resp:
            assert resp.status == 200
            assert (await resp.json())["latency_ms"] == 200
        assert proxy.mode is Mode.LATENCY
        assert proxy.settings.latency_ms == 200
        async with http.post(control.url + "/mode", json={"mode": "latency", "latency_ms": -5}) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
        assert error["code"] == "BAD_REQUEST"
        assert error["field"] == "latency_ms"
        async with http.post(control.url + "/mode", data=b"{not json") as resp:
            assert resp.status == 400
        assert proxy.settings.latency_ms == 200  # unchanged by the bad requests


async def test_cut_over_http(proxy: FaultProxy, control: ControlServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"a")
    assert await asyncio.wait_for(reader.readexactly(1), 2) == b"a"
    client = FaultControlClient(control.url)
    assert await client.cut() == 1
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(10), 2) == b""
    assert (await client.get())["stats"]["cuts"] == 1
    state = await client.set_mode("down")
    assert state["mode"] == "down"
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", proxy.port)
    with pytest.raises(ValueError, match="unknown mode"):
        await client.set_mode("sideways")


async def test_cli_process_serves_until_sigterm(echo_port: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "faults", "--upstream", f"127.0.0.1:{echo_port}",
        "--mode", "latency", "--latency-ms", "10",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        host, port = info["listen"].rsplit(":", 1)
        client = FaultControlClient(info["control"])
        assert (await client.get())["mode"] == "latency"
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        await client.set_mode("pass")
        assert (await client.get())["stats"]["bytes_up"] == 5
        writer.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
