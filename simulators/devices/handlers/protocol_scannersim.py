"""``scannersim://NAME``: the in-process scanner simulator (see simulators.devices.urls)."""

from simulators.devices.handlers.base import SimSerial


class Serial(SimSerial):
    SCHEME = "scannersim"
