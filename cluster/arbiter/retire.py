"""Which HTTP worker to retire on a scale-down: the least busy one, not gunicorn's oldest.

Used inside gunicorn's arbiter (``ClusterArbiter.manage_workers``), which has
no threads: ``CpuRates`` is refreshed from the arbiter's own loop, at most
once a second, from each worker's ``cpu_times`` in /proc.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cluster.observability.process import CpuMeter


@dataclass(frozen=True)
class WorkerLoad:
    pid: int
    age: int
    """gunicorn's spawn counter: lower is older."""
    cpu_rate: float
    """CPU seconds per second over the last refresh (0 when not measured yet)."""
    stale: bool
    """Spawned before the last reload: it runs the old code and must go first."""


def retire_order(workers: Iterable[WorkerLoad]) -> list[int]:
    """Pids in the order to retire them.

    Workers of a previous generation go first, oldest first (that is how a HUP
    reload replaces them); then the least busy, the oldest among equals as
    gunicorn would. CPU rates are compared at 1 % granularity so measurement
    noise does not override the age order among idle workers.
    """
    def key(w: WorkerLoad) -> tuple[int, int, int]:
        if w.stale:
            return (0, 0, w.age)
        return (1, round(w.cpu_rate * 100), w.age)

    return [w.pid for w in sorted(workers, key=key)]


class CpuRates:
    """Per-pid CPU rate (CPU seconds per second) between refreshes, at most one refresh per ``every`` seconds."""

    def __init__(self, every: float = 1.0, meter: CpuMeter | None = None) -> None:
        self.every = every
        self._meter = meter or CpuMeter()
        self._at: float | None = None
        self._rate: dict[int, float] = {}

    def refresh(self, pids: Iterable[int], now: float) -> None:
        """Measure every pid, unless the last refresh is less than ``every`` seconds old."""
        if self._at is not None and now - self._at < self.every:
            return
        self._at = now
        readings = self._meter.read(pids, now)
        self._rate = {pid: r.cpu_percent / 100.0 for pid, r in readings.items() if r.cpu_percent is not None}

    def rate(self, pid: int) -> float:
        return self._rate.get(pid, 0.0)
