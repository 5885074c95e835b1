"""simulators.devices.urls and handlers: scannersim:// and displaysim:// through serial_for_url, and
through the gateway's own PortWorker (read, write, unplug, replug)."""

from __future__ import annotations

import asyncio

import pytest
import serial

from gateway.device import PortOptions, PortWorker
from simulators.devices import urls

urls.register()


def test_serial_for_url_reads_scans_and_renders_writes() -> None:
    urls.scanner("u1").scan(b"LQ1:ABC\r")
    port = serial.serial_for_url("scannersim://u1", timeout=0.05)
    assert port.in_waiting == 8 and port.read(8) == b"LQ1:ABC\r"
    assert port.read(1) == b""  # the timeout
    display = serial.serial_for_url("displaysim://u1?command_set=cd5220&encoding=cp1251", timeout=0.05)
    display.write(b"\x1b@\x1bQA" + "Тест".encode("cp1251") + b"\r")
    sim = urls.display("u1")
    assert sim.model is not None and sim.model.text() == ("Тест", "")
    assert bytes(sim.written).startswith(b"\x1b@")


def test_an_unplugged_end_fails_open_ports_and_refuses_opens() -> None:
    sim = urls.scanner("u2")
    port = serial.serial_for_url("scannersim://u2", timeout=0.05)
    sim.unplug()
    with pytest.raises(serial.SerialException, match="returned no data"):
        port.read(1)
    with pytest.raises(serial.SerialException, match="could not open"):
        serial.serial_for_url("scannersim://u2")
    sim.plug()
    assert serial.serial_for_url("scannersim://u2", timeout=0.01).read(1) == b""


async def test_the_gateway_port_worker_uses_it_and_stops_promptly() -> None:
    sim = urls.scanner("u3")
    async with PortWorker(PortOptions("scannersim://u3", reconnect_s=(0.01,))) as worker:
        sim.scan(b"one\r")
        assert await asyncio.wait_for(worker.next_frame(), 2) == b"one"
        sim.unplug()
        sim.plug()
        sim.scan(b"two\r")
        assert await asyncio.wait_for(worker.next_frame(), 2) == b"two"
        assert worker.opened == 2
