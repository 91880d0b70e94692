"""p95 response time and 5xx rate over a sliding window, from the aggregated HTTP metrics (pure).

Counters and histogram buckets only grow, so the figures over a window are the
difference between the newest snapshot and the newest one at least a window
older, as Prometheus's ``rate`` and ``histogram_quantile`` would compute them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric


@dataclass(frozen=True)
class HttpSnapshot:
    at: float
    requests: float
    errors: float  # responses with a 5xx status
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), all routes summed


def snapshot(families: Iterable[Metric], at: float) -> HttpSnapshot:
    """The HTTP counters of one collection, summed over routes and workers."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in families:
        if family.name == "http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    requests += sample.value
                    if sample.labels.get("status", "").startswith("5"):
                        errors += sample.value
        elif family.name == "http_request_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return HttpSnapshot(at, requests, errors, tuple(sorted(buckets.items())))


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """``histogram_quantile``: linear interpolation inside the bucket that holds the rank."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class WindowFigures:
    requests: float
    p95_seconds: float | None
    error_rate_percent: float


@dataclass
class HttpWindow:
    """Snapshots kept for one window; ``figures`` compares the newest with the window's start."""

    window: float
    snapshots: deque[HttpSnapshot] = field(default_factory=deque)

    def add(self, snap: HttpSnapshot) -> WindowFigures:
        self.snapshots.append(snap)
        # Keep one snapshot at or before the window's start, as the baseline.
        while len(self.snapshots) > 2 and self.snapshots[1].at <= snap.at - self.window:
            self.snapshots.popleft()
        return self.figures()

    def figures(self) -> WindowFigures:
        newest, base = self.snapshots[-1], self.snapshots[0]
        if newest is base:
            base = HttpSnapshot(newest.at, 0.0, 0.0, tuple((b, 0.0) for b, _ in newest.buckets))
        requests = max(0.0, newest.requests - base.requests)
        errors = max(0.0, newest.errors - base.errors)
        before = dict(base.buckets)
        delta = tuple((b, max(0.0, c - before.get(b, 0.0))) for b, c in newest.buckets)
        return WindowFigures(
            requests=requests,
            p95_seconds=quantile(0.95, delta),
            error_rate_percent=100.0 * errors / requests if requests else 0.0,
        )
