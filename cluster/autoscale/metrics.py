"""The autoscaler's Prometheus metrics, created on first use.

A gauge without labels opens its file in the metrics directory when it is
constructed: built at import, it would be written before the supervisor
empties the previous run's directory (``Supervisor._prepare_state_dir``).
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _metrics() -> tuple[Any, Any]:
    from prometheus_client import Counter, Gauge

    workers = Gauge("cluster_workers", "HTTP workers running", multiprocess_mode="mostrecent")
    events = Counter("cluster_autoscale_events_total", "Worker count changes made by the autoscaler", ["direction"])
    for direction in ("up", "down"):
        events.labels(direction)
    return workers, events


def set_workers(count: int) -> None:
    _metrics()[0].set(count)


def count_event(direction: str) -> None:
    _metrics()[1].labels(direction).inc()
