"""One meter of per-process figures: CPU from ``cpu_times`` deltas between readings, RSS, state, start time.

Used by every process that watches others: the supervisor (its children and
the HTTP workers), the autoscaler, the monitor and gunicorn's arbiter (which
worker to retire). CPU is % of one core over the time since the previous
reading of the same pid by the same meter, so two users never disturb each
other's baseline (``psutil.Process.cpu_percent`` keeps one per object).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Reading:
    pid: int
    started: float
    """Wall-clock start time (``create_time``)."""
    cpu_percent: float | None
    """% of one core since this meter's previous reading of the pid; None on the first."""
    rss_bytes: int
    status: str


Figures = tuple[float, float, int, str]
"""(CPU seconds, user + system; start time; RSS bytes; state) of one process."""


def psutil_figures(pid: int) -> Figures:
    """A process's figures from /proc; raises ``psutil.Error`` when it is gone."""
    proc = psutil.Process(pid)
    with proc.oneshot():
        times = proc.cpu_times()
        return times.user + times.system, proc.create_time(), proc.memory_info().rss, proc.status()


class CpuMeter:
    """Per-pid readings; pids not asked for any more are forgotten.

    ``figures`` reads one process (psutil by default; a table of numbers in
    unit tests, so the arithmetic is tested without burning CPU).
    """

    def __init__(self, figures: Callable[[int], Figures] = psutil_figures) -> None:
        self._figures = figures
        self._last: dict[int, tuple[float, float]] = {}

    def read(self, pids: Iterable[int], now: float | None = None) -> dict[int, Reading]:
        """A reading of every pid still alive (gone ones are left out)."""
        now = time.monotonic() if now is None else now
        wanted = set(pids)
        for gone in set(self._last) - wanted:
            del self._last[gone]
        readings = {}
        for pid in wanted:
            try:
                cpu, started, rss, status = self._figures(pid)
            except psutil.Error:
                self._last.pop(pid, None)
                continue
            before = self._last.get(pid)
            self._last[pid] = (now, cpu)
            percent = None
            if before is not None and now > before[0]:
                percent = max(0.0, (cpu - before[1]) / (now - before[0]) * 100.0)
            readings[pid] = Reading(pid, started, percent, rss, status)
        return readings
