"""Mirror of simulators.faults.scenarios.business: registration, and the one scenario that says NOT RUN."""

from __future__ import annotations

from pathlib import Path

from simulators.faults.catalogue import Context, Verdict, load_scenarios
from simulators.faults.scenarios import business


def test_business_faults_are_registered() -> None:
    registry = load_scenarios()
    for name in (
        "clock-skew",
        "gateway-clock-jump",
        "two-tills-one-balance",
        "offline-overspend",
        "refund-before-sale",
        "webhook-twice",
        "customer-changed",
        "till-crash-hold-lapse",
    ):
        assert registry[name].run.__module__ == business.__name__


async def test_gateway_clock_jump_says_why_it_does_not_run(tmp_path: Path) -> None:
    outcome = await business.gateway_clock_jump(Context(tmp_path))
    assert outcome.verdict is Verdict.NOT_RUN and "libfaketime" in outcome.note
