"""``shtrihsim://NAME``: the in-process Shtrih-M register simulator (see simulators.devices.urls)."""

from typing import Any

from simulators.devices import urls
from simulators.devices.handlers.base import SimSerial


class Serial(SimSerial):
    SCHEME = "shtrihsim"

    def write(self, data: Any) -> int:
        self._check()
        data = bytes(data)
        self._sim.written += data
        self._sim.incoming += urls.shtrih(self._sim.name).receive(data)
        return len(data)
