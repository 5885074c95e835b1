"""The gateway's Prometheus metrics: specified once here, used everywhere by name.

Every metric is prefixed ``posgw_``. Labels are bounded sets (driver names, outcome names),
never receipt or customer ids. Tests may create a fresh :class:`Metrics` with its own
registry; the daemon uses one per process.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

CALC_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.calc_seconds = Histogram(
            "posgw_calc_seconds", "Time to answer a calculate, by driver and mode (online/offline).",
            ["driver", "mode"], buckets=CALC_BUCKETS, registry=r,
        )
        self.calc_answers = Counter(
            "posgw_calc_answers_total", "Calculate answers by mode: online, offline, no_customer.",
            ["driver", "mode"], registry=r,
        )
        self.core_calls = Counter(
            "posgw_core_calls_total", "gRPC calls to the core by method and outcome (gRPC code).",
            ["method", "code"], registry=r,
        )
        self.breaker_state = Gauge(
            "posgw_core_breaker_open", "1 while the circuit breaker to the core is open.", registry=r,
        )
        self.outbox_depth = Gauge(
            "posgw_outbox_pending", "Events stored but not yet acknowledged by the core.", registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "posgw_outbox_oldest_pending_seconds", "Age of the oldest pending event.", registry=r,
        )
        self.outbox_writable = Gauge(
            "posgw_outbox_writable", "1 while the outbox file can be written; 0 while writes fail "
            "(full disk, I/O errors): sales are refused then.", registry=r,
        )
        self.outbox_writable.set(1)
        self.salvage_unacknowledged = Gauge(
            "posgw_outbox_salvage_unacknowledged",
            "Salvages of a damaged outbox not yet acknowledged by an operator (the gateway is degraded).",
            registry=r,
        )
        self.salvaged_rows = Gauge(
            "posgw_outbox_salvaged_rows", "Events salvaged from a damaged outbox (unacknowledged salvages).",
            registry=r,
        )
        self.salvage_lost_rows = Gauge(
            "posgw_outbox_salvage_lost_rows",
            "Events that could not be read from a damaged outbox (unacknowledged salvages).", registry=r,
        )
        self.outbox_writes = Counter(
            "posgw_outbox_events_total", "Events submitted, by outcome: stored, duplicate, failed.",
            ["outcome"], registry=r,
        )
        self.outbox_fsyncs = Counter(
            "posgw_outbox_commits_total", "Durable group commits (one fsync each).", registry=r,
        )
        self.outbox_batch_rows = Histogram(
            "posgw_outbox_rows_per_commit", "Events per group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r,
        )
        self.delivered = Counter(
            "posgw_delivered_total", "Events acknowledged by the core, by kind.", ["kind"], registry=r,
        )
        self.delivery_retries = Counter(
            "posgw_delivery_retries_total", "Delivery attempts that failed retriably.", registry=r,
        )
        self.rejected = Counter(
            "posgw_rejected_total", "Events permanently rejected by the core, by reason.",
            ["reason"], registry=r,
        )
        self.operator_queue = Gauge(
            "posgw_operator_queue", "Rejected events waiting for an operator.", registry=r,
        )
        self.driver_events = Counter(
            "posgw_driver_events_total", "Per-driver counters (requests, errors, duplicates...).",
            ["driver", "what"], registry=r,
        )
        self.http_requests = Counter(
            "posgw_http_requests_total", "HTTP requests by driver and status class.",
            ["driver", "status"], registry=r,
        )
        self.http_refused = Counter(
            "posgw_http_refused_total",
            "Requests and connections refused for overload (connections: past gateway.max_connections; "
            "busy: past gateway.max_requests_in_flight).", ["reason"], registry=r,
        )
        self.driver_restarts = Counter(
            "posgw_driver_restarts_total", "Supervised driver task restarts.", ["driver"], registry=r,
        )
        self.driver_alarm = Gauge(
            "posgw_driver_alarm", "1 while a driver's named alarm is raised (see /healthz alarms).",
            ["driver", "key"], registry=r,
        )
        # (driver, key) -> (message, since: unix time): the raised alarms /healthz lists
        self.alarms: dict[tuple[str, str], tuple[str, float]] = {}

    def alarm(self, driver: str, key: str, message: str | None, now: float | None = None) -> None:
        """Raise (``message``) or clear (None) ``driver``'s alarm ``key``; a raised alarm keeps its
        first ``since`` while its message changes. The gauge child stays (at 0) once cleared."""
        if message is None:
            if self.alarms.pop((driver, key), None) is not None:
                self.driver_alarm.labels(driver, key).set(0)
            return
        since = self.alarms.get((driver, key), ("", time.time() if now is None else now))[1]
        self.alarms[(driver, key)] = (message, since)
        self.driver_alarm.labels(driver, key).set(1)

    def child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric.labels(*values)``, cached: label values in the order the metric declares them."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found
