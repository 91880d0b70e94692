"""The cluster's health score, 0-100, and its level (pure).

Formula. Each metric gets a health ``h`` from its value ``v`` and its
thresholds ``w`` (warning) and ``c`` (critical), piecewise linear through:

    v <= w/2 -> 100,   v = w -> 70,   v = c -> 30,   v >= c + (c - w) -> 0

(no value -> 100). The score is half the weighted mean of the metrics' ``h``
and half the worst ``h``, rounded:

    score = round(0.5 * sum(weight_m * h_m) / sum(weight_m) + 0.5 * min(h_m))

so one metric past critical pulls the score down to "degraded" by itself,
while a machine where everything is at warning is "good" at best. Weights:
error rate 25, response time 20, CPU 15, memory 15, concurrent users 15,
queue size 10. Levels: >= 90 excellent, >= 70 good, >= 40 degraded, else critical.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from cluster.monitoring.alerts import Thresholds
from cluster.config.monitored import MONITORED

WEIGHTS: dict[str, float] = {m.name: m.weight for m in MONITORED}
LEVELS: tuple[tuple[int, Literal["excellent", "good", "degraded"]], ...] = (
    (90, "excellent"), (70, "good"), (40, "degraded"),
)


def metric_health(value: float | None, thresholds: Thresholds) -> float:
    """One metric's health, 100 (fine) to 0 (far past critical)."""
    if value is None:
        return 100.0
    w, c = thresholds.warning, thresholds.critical
    points = [(w / 2, 100.0), (w, 70.0), (c, 30.0), (c + (c - w), 0.0)]
    if value <= points[0][0]:
        return 100.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if value <= x1:
            if x1 == x0:
                return y1
            return y0 + (y1 - y0) * (value - x0) / (x1 - x0)
    return 0.0


def score(values: Mapping[str, float | None], thresholds: Mapping[str, Thresholds]) -> int:
    """The health score of a set of metric values (see the module docstring)."""
    healths = {m: metric_health(values.get(m), thresholds[m]) for m in WEIGHTS}
    weighted = sum(WEIGHTS[m] * h for m, h in healths.items()) / sum(WEIGHTS.values())
    return round(0.5 * weighted + 0.5 * min(healths.values()))


def level(value: int) -> Literal["excellent", "good", "degraded", "critical"]:
    for floor, name in LEVELS:
        if value >= floor:
            return name
    return "critical"
