"""The pyserial ``Serial`` class behind the simulators' URL handlers (see simulators.devices.urls)."""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any

import serial
from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from simulators.devices import urls


class SimSerial(SerialBase):  # type: ignore[misc]
    SCHEME = ""

    def open(self) -> None:
        if self._port is None:
            raise SerialException("port must be configured first")
        parts = urllib.parse.urlsplit(self._port)
        if parts.scheme != self.SCHEME:
            raise SerialException(f"expected {self.SCHEME}://NAME, not {self._port!r}")
        options = dict(urllib.parse.parse_qsl(parts.query))
        name = parts.netloc or parts.path
        self._sim = (urls.display(name, options.get("command_set", "epson"), options.get("encoding", "cp866"))
                     if self.SCHEME == "displaysim" else urls.end(self.SCHEME, name))
        if not self._sim.present:
            raise SerialException(f"could not open port {self._port}: [Errno 2] No such file or directory")
        self._generation = self._sim.generation
        self._cancel = threading.Event()
        self._sim.opens += 1
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def _check(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
        if self._sim.generation != self._generation:
            raise SerialException("device reports readiness to read but returned no data "
                                  "(device disconnected or multiple access on port?)")

    @property
    def in_waiting(self) -> int:
        self._check()
        return len(self._sim.incoming)

    def read(self, size: int = 1) -> bytes:
        self._check()
        self._cancel.clear()
        end = time.monotonic() + (self._timeout if self._timeout is not None else 3600.0)
        while not self._sim.incoming and time.monotonic() < end and not self._cancel.is_set():
            self._check()
            time.sleep(0.005)
        self._check()  # unplugged while waiting: these bytes are the next port's
        data = bytes(self._sim.incoming[:size])
        del self._sim.incoming[:size]
        return data

    def cancel_read(self) -> None:
        self._cancel.set()

    def write(self, data: Any) -> int:
        self._check()
        if self._sim.stalled:  # a display that takes nothing: the write times out
            time.sleep(self._write_timeout or 0.0)
            raise serial.SerialTimeoutException("Write timeout")
        data = bytes(data)
        self._sim.written += data
        if self._sim.model is not None:
            self._sim.model.feed(data)
        return len(data)

    def flush(self) -> None:
        self._check()

    def reset_input_buffer(self) -> None:
        self._check()

    def reset_output_buffer(self) -> None:
        self._check()

    def _reconfigure_port(self) -> None:
        pass


__all__ = ["SimSerial", "serial"]
