"""``displaysim://NAME``: the in-process display simulator (see simulators.devices.urls)."""

from simulators.devices.handlers.base import SimSerial


class Serial(SimSerial):
    SCHEME = "displaysim"
