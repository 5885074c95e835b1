"""pyserial URL handlers for the simulators: ``scannersim://NAME``, ``displaysim://NAME`` and
``shtrihsim://NAME`` (a Shtrih-M register: :func:`shtrih` gives its state and faults).

After :func:`register`, ``serial.serial_for_url("scannersim://lane1")`` opens the in-process
scanner named ``lane1`` (:func:`scanner` gives the test its end: ``scan(...)`` queues bytes the
port then reads) and ``displaysim://lane1`` a display (:func:`display`: the
:class:`~simulators.devices.display.DisplayModel` the port's writes go to; ``?command_set=`` and
``?encoding=`` on first use). :meth:`SimEnd.unplug` makes the open port fail as an unplugged USB
device does and refuses opens until :meth:`SimEnd.plug`; ``stalled = True`` makes every write
time out (after the port's write timeout) as a display that stopped taking bytes does.
"""

from __future__ import annotations

import serial

from simulators.devices.display import DisplayModel
from simulators.devices.shtrih import ShtrihSim

PACKAGE = "simulators.devices.handlers"


class SimEnd:
    """The device's end of one simulated port (shared by every open of the same name)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.incoming = bytearray()  # for the gateway to read
        self.written = bytearray()  # what the gateway wrote
        self.present = True
        self.generation = 0  # bumped on unplug: ports opened before fail
        self.model: DisplayModel | None = None
        self.opens = 0
        self.stalled = False  # writes time out (a display that stopped taking bytes)

    def scan(self, data: bytes) -> None:
        self.incoming += data

    def unplug(self) -> None:
        self.present = False
        self.generation += 1

    def plug(self) -> None:
        self.present = True


ENDS: dict[tuple[str, str], SimEnd] = {}


def end(scheme: str, name: str) -> SimEnd:
    return ENDS.setdefault((scheme, name), SimEnd(name))


def scanner(name: str) -> SimEnd:
    return end("scannersim", name)


def display(name: str, command_set: str = "epson", encoding: str = "cp866") -> SimEnd:
    sim = end("displaysim", name)
    if sim.model is None:
        sim.model = DisplayModel(command_set, encoding)
    return sim


REGISTERS: dict[str, ShtrihSim] = {}


def shtrih(name: str) -> ShtrihSim:
    """The register behind ``shtrihsim://NAME`` (its port end is ``end("shtrihsim", NAME)``)."""
    return REGISTERS.setdefault(name, ShtrihSim())


def register() -> None:
    """Let ``serial_for_url`` open ``scannersim://`` and ``displaysim://`` (idempotent)."""
    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)
