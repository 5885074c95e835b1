"""Mirror of simulators.faults.scenarios.network: its five link faults are registered with titles
(each runs a real stack for tens of seconds, so they run in make faults, not here)."""

from __future__ import annotations

from simulators.faults.catalogue import load_scenarios
from simulators.faults.scenarios import network


def test_link_faults_are_registered() -> None:
    registry = load_scenarios()
    for name in ("core-blackholed", "core-slow", "core-flapping", "core-restarted", "core-goaway"):
        assert registry[name].run.__module__ == network.__name__ and registry[name].title
    assert network.BUDGET_MS + network.MARGIN_MS == 400
