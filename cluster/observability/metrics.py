"""The Prometheus metrics every process writes, in prometheus_client's multiprocess mode.

Every process of the tree writes its samples into ``$PROMETHEUS_MULTIPROC_DIR``
(``<state_dir>/metrics``); the supervisor alone reads and aggregates them. How a
process is pointed at it is ``observability.multiproc``'s job.

Importing this module creates no file (a metric without labels opens its file
when it is constructed): the HTTP metrics are built on first use, in a worker,
so the supervisor may import this before it has emptied the previous run's
directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client import multiprocess

from cluster.observability.multiproc import MULTIPROC_ENV

# Bucket bounds include the response-time thresholds (1 s, 3 s) so the p95
# the monitor derives from them is exact where it matters.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
UNMATCHED_ROUTE = "__unmatched__"

CHILD_RESTARTS = Counter(
    "cluster_child_restarts", "Restarts of supervised children, HTTP workers included.", ["child"],
)


def mark_dead(pid: int) -> None:
    """Drop a dead process's live gauges (its counters stay: totals never go back)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and os.path.isdir(path):
        multiprocess.mark_process_dead(pid, path)


@dataclass(frozen=True)
class HttpMetrics:
    requests: Counter
    duration: Histogram
    in_flight: Gauge


@cache
def http_metrics() -> HttpMetrics:
    """The HTTP tier's metrics, created once per process on first use."""
    return HttpMetrics(
        requests=Counter(
            "http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
        ),
        duration=Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request, by route template.",
            ["method", "route"], buckets=DURATION_BUCKETS,
        ),
        in_flight=Gauge(
            "http_requests_in_flight", "HTTP requests being answered now (the seed's concurrent users).",
            multiprocess_mode="livesum",
        ),
    )
