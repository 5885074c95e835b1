"""gateway.metrics: one registry per Metrics, the metric names the status page and tests scrape,
and cached children."""

from __future__ import annotations

from prometheus_client import generate_latest

from gateway.metrics import CALC_BUCKETS, Metrics


def test_child_is_cached_per_metric_and_labels() -> None:
    m = Metrics()
    a = m.child(m.driver_events, "native", "requests")
    assert m.child(m.driver_events, "native", "requests") is a
    assert m.child(m.driver_events, "native", "committed") is not a
    a.inc(2)
    labels = {"driver": "native", "what": "requests"}
    assert m.registry.get_sample_value("posgw_driver_events_total", labels) == 2


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.child(one.http_requests, "evotor", "2xx").inc()
    labels = {"driver": "evotor", "status": "2xx"}
    assert one.registry.get_sample_value("posgw_http_requests_total", labels) == 1
    assert two.registry.get_sample_value("posgw_http_requests_total", labels) is None


def test_exposition_names_and_calc_buckets() -> None:
    m = Metrics()
    m.child(m.calc_seconds, "native", "online").observe(0.004)
    m.outbox_depth.set(3)
    text = generate_latest(m.registry).decode()
    for name in ("posgw_calc_seconds_bucket", "posgw_outbox_pending 3.0", "posgw_core_breaker_open",
                 "posgw_outbox_oldest_pending_seconds", "posgw_operator_queue"):
        assert name in text, name
    assert m.registry.get_sample_value(
        "posgw_calc_seconds_bucket", {"driver": "native", "mode": "online", "le": "0.005"}) == 1
    assert m.registry.get_sample_value(
        "posgw_calc_seconds_bucket", {"driver": "native", "mode": "online", "le": "0.002"}) == 0
    assert CALC_BUCKETS == tuple(sorted(CALC_BUCKETS)) and 0.3 in CALC_BUCKETS  # the default calc budget


def test_alarm_keeps_its_first_since_and_the_gauge_follows() -> None:
    m = Metrics()
    m.alarm("serial", "port:scanner", "absent", now=1.0)
    m.alarm("serial", "port:scanner", "absent (3 failed opens)", now=9.0)
    assert m.alarms == {("serial", "port:scanner"): ("absent (3 failed opens)", 1.0)}
    text = generate_latest(m.registry).decode()
    assert 'posgw_driver_alarm{driver="serial",key="port:scanner"} 1.0' in text
    m.alarm("serial", "port:scanner", None)
    assert m.alarms == {}
    cleared = generate_latest(m.registry).decode()
    assert 'posgw_driver_alarm{driver="serial",key="port:scanner"} 0.0' in cleared
