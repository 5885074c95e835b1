"""Fault injection: a TCP proxy whose behaviour (pass, latency, refuse, down, blackhole, cut,
flap) is switched at run time from Python or over HTTP. See :mod:`simulators.faults.modes`."""

from __future__ import annotations

from simulators.faults.control import ControlServer, FaultControlClient, control_app
from simulators.faults.modes import FaultSettings, Mode, ProxyStats
from simulators.faults.proxy import FaultProxy

__all__ = [
    "ControlServer",
    "FaultControlClient",
    "FaultProxy",
    "FaultSettings",
    "Mode",
    "ProxyStats",
    "control_app",
]
