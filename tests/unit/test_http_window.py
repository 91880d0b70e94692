"""p95 and error rate over a window from cumulative counters."""

from __future__ import annotations

import math

import pytest
from prometheus_client.metrics_core import Metric

from cluster.monitoring.http_window import HttpSnapshot, HttpWindow, quantile, snapshot

INF = math.inf


def snap(at, requests, errors, buckets):
    return HttpSnapshot(at, requests, errors, tuple(buckets))


def test_quantile_interpolates_inside_the_bucket():
    buckets = ((0.1, 50.0), (1.0, 100.0), (INF, 100.0))
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.95, buckets) == pytest.approx(0.1 + 0.9 * 45 / 50)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound():
    assert quantile(0.95, ((1.0, 10.0), (3.0, 10.0), (INF, 100.0))) == 3.0


def test_quantile_of_nothing_is_none():
    assert quantile(0.95, ()) is None
    assert quantile(0.95, ((1.0, 0.0), (INF, 0.0))) is None


def test_window_uses_the_difference_with_the_snapshot_a_window_ago():
    w = HttpWindow(window=60)
    w.add(snap(0, 1000, 500, [(0.1, 1000), (INF, 1000)]))  # an old bad period
    w.add(snap(30, 1500, 500, [(0.1, 1500), (INF, 1500)]))
    figures = w.add(snap(60, 2000, 510, [(0.1, 1990), (1.0, 2000), (INF, 2000)]))
    assert figures.requests == 1000
    assert figures.error_rate_percent == pytest.approx(1.0)
    later = w.add(snap(120, 2100, 510, [(0.1, 2090), (1.0, 2100), (INF, 2100)]))
    # the baseline moved to t=60: 100 requests, no new error
    assert later.requests == 100
    assert later.error_rate_percent == 0.0


def test_no_requests_means_zero_error_rate_and_no_p95():
    w = HttpWindow(window=10)
    w.add(snap(0, 5, 1, [(INF, 5)]))
    figures = w.add(snap(20, 5, 1, [(INF, 5)]))
    assert figures.error_rate_percent == 0.0
    assert figures.p95_seconds is None


def test_snapshot_sums_routes_and_counts_only_5xx_as_errors():
    requests = Metric("http_requests", "", "counter")
    requests.add_sample("http_requests_total", {"method": "GET", "route": "/a", "status": "200"}, 90)
    requests.add_sample("http_requests_total", {"method": "GET", "route": "/a", "status": "503"}, 7)
    requests.add_sample("http_requests_total", {"method": "GET", "route": "/b", "status": "404"}, 3)
    duration = Metric("http_request_duration_seconds", "", "histogram")
    for route, count in (("/a", 97), ("/b", 3)):
        duration.add_sample("http_request_duration_seconds_bucket", {"route": route, "le": "0.1"}, count)
        duration.add_sample("http_request_duration_seconds_bucket", {"route": route, "le": "+Inf"}, count)
        duration.add_sample("http_request_duration_seconds_sum", {"route": route}, 1.0)
    s = snapshot([requests, duration], 5.0)
    assert (s.requests, s.errors) == (100, 7)
    assert s.buckets == ((0.1, 100), (INF, 100))
