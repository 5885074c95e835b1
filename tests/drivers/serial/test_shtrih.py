"""drivers.serial.shtrih: frames byte for byte (the notes' vectors), the short status, and the link
dialogue against the register simulator (simulators.devices.shtrih through ``shtrihsim://``) with
every fault it can inject."""

from __future__ import annotations

import itertools

import pytest
import serial

from drivers.serial import shtrih
from simulators.devices import urls
from simulators.devices.shtrih import ShtrihSim

urls.register()
_names = itertools.count()


def test_frames_are_the_notes_vectors() -> None:
    assert shtrih.short_status_request(30) == bytes.fromhex("02 05 10 1E 00 00 00 0B")
    assert shtrih.device_type_request() == bytes.fromhex("02 01 FC FD")
    assert shtrih.frame(0xFF01, b"\x1e\x00\x00\x00") == bytes.fromhex("02 06 FF 01 1E 00 00 00") + bytes([
        0x06 ^ 0xFF ^ 0x01 ^ 0x1E])
    with pytest.raises(ValueError):
        shtrih.frame(0x10, bytes(255))


def test_the_notes_status_answer_with_a_document_open() -> None:
    raw = bytes.fromhex("02 10 10 00 1E 00 00 08 00 00 00 00 00 00 00 00 00 00 16")
    assert shtrih.lrc(raw[1:-1]) == raw[-1]
    status = shtrih.parse_short_status(raw[2:-1])
    assert (status.error, status.operator, status.state, status.problem) == (0, 30, "document open", "")


@pytest.mark.parametrize(("body", "problem"), [
    (bytes([0x10, 0x4F]), "error 0x4f: wrong password"),
    (bytes([0x10, 0x50]), "error 0x50: still printing the previous command"),
    (bytes([0x10, 0, 30, 0, 0, 0x13, 0]),
     "the shift is open over 24 hours: close it (Z report) before the next sale"),
    (bytes([0x10, 0, 30, 0, 0, 0x02, 0]), ""),
])
def test_problems(body: bytes, problem: str) -> None:
    assert shtrih.parse_short_status(body).problem == problem


@pytest.mark.parametrize("body", [b"", bytes([0x11, 0]), bytes([0x10, 0, 30])])
def test_not_a_status(body: bytes) -> None:
    with pytest.raises(ValueError):
        shtrih.parse_short_status(body)


def register(**faults: object) -> tuple[ShtrihSim, serial.SerialBase, str]:
    name = f"f{next(_names)}"
    sim = urls.shtrih(name)
    for key, value in faults.items():
        setattr(sim, key, value)
    return sim, serial.serial_for_url(f"shtrihsim://{name}", timeout=0.1), name


@pytest.mark.parametrize("faults", [
    {}, {"filler": True}, {"nak_frames": 2}, {"bad_lrc_answers": 1},
    {"stale": bytes([0x10, 0, 30, 0, 0, 2, 0])},
])
def test_the_link_gets_the_status_through_every_recoverable_fault(faults: dict[str, object]) -> None:
    sim, port, name = register(mode=2, **faults)
    status = shtrih.short_status(port, 30)
    assert (status.state, status.operator) == ("shift open", 30)
    assert sim.commands == [0x10]
    written = bytes(urls.end("shtrihsim", name).written)
    assert written.startswith(b"\x05") and written.count(shtrih.short_status_request(30)) == 1 + faults.get(
        "nak_frames", 0)  # ENQ first; the frame resent once per NAK


def test_the_link_reports_what_it_cannot_recover() -> None:
    _, port, _ = register(silent=True)
    with pytest.raises(shtrih.LinkError, match="no answer to ENQ"):
        shtrih.short_status(port, 30)
    _, port, _ = register(nak_frames=5)
    with pytest.raises(shtrih.LinkError, match="NAK"):
        shtrih.short_status(port, 30)
    _, port, _ = register()
    assert shtrih.short_status(port, 99).problem == "error 0x4f: wrong password"
