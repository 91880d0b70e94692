"""The request tally files durations and counts exactly as prometheus_client's own calls would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cluster.observability.metrics import DURATION_BUCKETS, HttpMetrics
from cluster.workers.http_metrics import RequestTally

OBSERVATIONS = [
    ("GET", "/ping", 200, 0.0004), ("GET", "/ping", 200, 0.005), ("GET", "/ping", 200, 0.0051),
    ("GET", "/items/{id}", 404, 0.3), ("POST", "/items/{id}", 500, 2.5), ("GET", "/ping", 200, 11.0),
    ("GET", "/ping", 503, 1.0), ("OTHER", "__unmatched__", 405, 0.0),
]


def metrics(registry: CollectorRegistry) -> HttpMetrics:
    return HttpMetrics(
        requests=Counter("http_requests", "r", ["method", "route", "status"], registry=registry),
        duration=Histogram("http_request_duration_seconds", "d", ["method", "route"], buckets=DURATION_BUCKETS,
                           registry=registry),
        in_flight=Gauge("http_requests_in_flight", "f", registry=registry),
    )


def exposition(registry: CollectorRegistry) -> list[str]:
    """The text format without the ``_created`` timestamps (which only say when a series was made)."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_a_flushed_tally_exposes_what_direct_observations_would() -> None:
    direct_registry, tallied_registry = CollectorRegistry(), CollectorRegistry()
    direct, tallied = metrics(direct_registry), metrics(tallied_registry)
    for method, route, status, seconds in OBSERVATIONS:
        direct.requests.labels(method, route, str(status)).inc()
        direct.duration.labels(method, route).observe(seconds)

    tally = RequestTally()
    for observation in OBSERVATIONS[:3]:
        tally.record(*observation)
    tally.flush(tallied)
    for observation in OBSERVATIONS[3:]:
        tally.record(*observation)
    tally.flush(tallied)

    assert exposition(tallied_registry) == exposition(direct_registry)
    assert tally.counts == {} and tally.buckets == {} and tally.sums == {}


def test_a_flush_with_nothing_tallied_writes_nothing() -> None:
    registry = CollectorRegistry()
    RequestTally().flush(metrics(registry))
    assert b"http_requests_total{" not in generate_latest(registry)
