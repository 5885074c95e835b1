"""Mirror of simulators.faults.scenarios.delivery: registration, the tmpfs filler and the watchdog
emulator's reading of sd_notify datagrams (the scenarios themselves run in make faults)."""

from __future__ import annotations

import socket
from pathlib import Path

from simulators.faults.catalogue import load_scenarios
from simulators.faults.scenarios import delivery


def test_delivery_faults_are_registered() -> None:
    registry = load_scenarios()
    for name in (
        "ack-lost-replay",
        "kill9-commit-phases",
        "poison-head",
        "disk-full",
        "damaged-outbox",
        "frozen-loop",
        "backlog",
    ):
        assert registry[name].run.__module__ == delivery.__name__
    assert registry["backlog"].timeout_s >= 1800


def test_watchdog_emulator_counts_pings(tmp_path: Path) -> None:
    dog = delivery.WatchdogEmulator(tmp_path / "n.sock", 1.0)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1", str(tmp_path / "n.sock"))
            s.sendto(b"WATCHDOG=1", str(tmp_path / "n.sock"))
            s.sendto(b"STATUS=x", str(tmp_path / "n.sock"))
        dog.drain()
        assert dog.pings == 1 and dog.last_ping > 0
    finally:
        dog.close()
    assert not (tmp_path / "n.sock").exists()
