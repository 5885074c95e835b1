"""Circuit breaker in front of the loyalty core: stop waiting on a core that keeps failing.

A small state machine with an injected clock (no I/O, no sleeps):

- ``closed``: calls go through; ``failure_threshold`` consecutive failures open the breaker.
- ``open``: :meth:`CircuitBreaker.allow` refuses at once (the caller goes offline without
  spending its budget) until ``reset_after_s`` have passed since it opened.
- ``half_open``: exactly one probe call is let through. Its success closes the breaker, its
  failure re-opens it for another ``reset_after_s``. A probe whose outcome is never recorded
  (the caller was cancelled) stops blocking after ``reset_after_s``: another probe is allowed.

Invariants: any success resets the consecutive-failure count; business refusals from the core
count as successes (the core answered), which is the caller's job to decide. The gauge
``posgw_core_breaker_open`` is 1 whenever the state is not ``closed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from gateway.metrics import Metrics

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        reset_after_s: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_after_s <= 0:
            raise ValueError("reset_after_s must be positive")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._metrics = metrics
        self._failures = 0
        self._opened_at: float | None = None  # set while open or half-open
        self._probe_started: float | None = None  # set while a half-open probe is in flight
        self._publish()

    def bind_metrics(self, metrics: Metrics) -> None:
        """Publish to ``metrics`` (the core client binds its own when the breaker has none)."""
        self._metrics = metrics
        self._publish()

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after_s:
            return "half_open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May a call go to the core now? In half-open, True only for the single probe."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self._clock()
        if self._probe_started is not None and now - self._probe_started < self.reset_after_s:
            return False  # a probe is already in flight
        self._probe_started = now
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_started = None
        self._publish()

    def record_failure(self) -> None:
        self._failures += 1
        if self._opened_at is not None:
            # A failed probe (or a late failure of a call started before opening): re-open.
            if self.state == "half_open":
                self._opened_at = self._clock()
                self._probe_started = None
        elif self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probe_started = None
        self._publish()

    def _publish(self) -> None:
        if self._metrics is not None:
            self._metrics.breaker_state.set(0 if self._opened_at is None else 1)
