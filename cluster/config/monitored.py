"""The registry of the six monitored metrics: name, unit, weight in the health score.

Every place that lists them (the settings' threshold checks, the monitor, the
health score, the CLI) reads this tuple, so a seventh metric is added here.
Each one also has ``monitoring.<name>_warning`` and ``<name>_critical`` settings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MonitoredMetric:
    name: str
    unit: str
    weight: float
    """Share of the health score (the weights sum to 100)."""


MONITORED: tuple[MonitoredMetric, ...] = (
    MonitoredMetric("cpu", "%", 15),
    MonitoredMetric("memory", "%", 15),
    MonitoredMetric("response_time", "s", 20),
    MonitoredMetric("error_rate", "%", 25),
    MonitoredMetric("concurrent_users", "requests", 15),
    MonitoredMetric("queue_size", "jobs", 10),
)
NAMES: tuple[str, ...] = tuple(m.name for m in MONITORED)
