"""simulators.devices.ptys: the device end of a pty pair, seen from pyserial on the other end."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import serial

from simulators.devices.ptys import DevicePty

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pty pairs")


def test_peer_open_send_read_unplug_replug(tmp_path: Path) -> None:
    link = tmp_path / "by-id-scanner"
    pty = DevicePty(link)
    try:
        assert not pty.peer_open()
        port = serial.Serial(str(link), timeout=0.5)
        assert pty.peer_open()
        pty.send(b"hello\r")
        assert port.read(6) == b"hello\r"
        port.write(b"\x1b@")
        port.flush()
        deadline = time.monotonic() + 2
        got = b""
        while got != b"\x1b@" and time.monotonic() < deadline:
            got += pty.read()
        assert got == b"\x1b@"
        old = pty.path
        pty.replug()
        with pytest.raises(serial.SerialException):
            port.read(1)
        port.close()
        assert not pty.peer_open()
        assert link.resolve() != Path(old) or pty.path == old
        port = serial.Serial(str(link), timeout=0.5)
        assert pty.peer_open()
        port.close()
    finally:
        pty.close()
    assert not link.exists()
