"""Which HTTP worker to retire: the previous generation's once new ones serve, then the least busy.

Used inside gunicorn's arbiter (``ClusterArbiter.manage_workers``), which has
no threads: ``CpuRates`` is refreshed from the arbiter's own loop, at most
once a second, from each worker's ``cpu_times`` in /proc.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
    ready: bool = True
    """It serves (its app is built and it listens): it can take a retiring worker's place."""


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


def to_spawn(workers: Sequence[WorkerLoad], target: int) -> int:
    """How many workers to start: the current generation (booting ones included) is short of ``target``."""
    return max(0, target - sum(not w.stale for w in workers))


def to_retire(workers: Sequence[WorkerLoad], target: int) -> list[int]:
    """Pids to tell to retire now, of workers not already retiring.

    A previous generation's worker leaves only once a new one serves in its
    place, so ``target`` workers keep serving through a reload however long
    the app takes to build (gunicorn retires them as soon as it has forked the
    new ones, issue 1757). Beyond the target, the current generation gives up
    its least busy workers (a scale-down).
    """
    fresh = [w for w in workers if not w.stale]
    stale = [w for w in workers if w.stale]
    kept_stale = max(0, target - sum(w.ready for w in fresh))
    return retire_order(stale)[:max(0, len(stale) - kept_stale)] + retire_order(fresh)[:max(0, len(fresh) - target)]


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
