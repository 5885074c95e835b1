"""CircuitBreaker state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from gateway.breaker import CircuitBreaker
from gateway.metrics import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, reset: float = 5.0) -> tuple[CircuitBreaker, FakeClock, Metrics]:
    clock, metrics = FakeClock(), Metrics()
    return CircuitBreaker(threshold, reset, clock=clock, metrics=metrics), clock, metrics


def gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("posgw_core_breaker_open")


def test_opens_after_consecutive_failures_only() -> None:
    b, _, m = make(threshold=3)
    b.record_failure()
    b.record_failure()
    b.record_success()  # resets the run
    b.record_failure()
    b.record_failure()
    assert b.state == "closed" and b.allow()
    assert gauge(m) == 0
    b.record_failure()
    assert b.state == "open"
    assert not b.allow()
    assert gauge(m) == 1


def test_half_open_allows_exactly_one_probe_then_closes_on_success() -> None:
    b, clock, m = make(threshold=1, reset=5.0)
    b.record_failure()
    clock.now += 4.999
    assert not b.allow()
    clock.now += 0.001
    assert b.state == "half_open"
    assert b.allow()  # the probe
    assert not b.allow()  # nobody else while it is in flight
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()
    assert gauge(m) == 0


def test_failed_probe_reopens_for_a_full_period() -> None:
    b, clock, _ = make(threshold=2, reset=5.0)
    b.record_failure()
    b.record_failure()
    clock.now += 5.0
    assert b.allow()
    clock.now += 1.0
    b.record_failure()
    assert b.state == "open"
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()


def test_lost_probe_stops_blocking_after_reset_period() -> None:
    b, clock, _ = make(threshold=1, reset=2.0)
    b.record_failure()
    clock.now += 2.0
    assert b.allow()  # probe whose outcome is never recorded
    clock.now += 1.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0.0)
