"""The supervisor's view of gunicorn's workers: the arbiter's children, read with psutil."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import psutil

log = logging.getLogger("cluster.supervisor.http_workers")


@dataclass
class WorkerSample:
    pid: int
    started: float
    cpu_seconds: float
    cpu_percent: float | None
    rss_bytes: int
    status: str


class HttpWorkers:
    """Tracks the arbiter's workers across refreshes: who appeared, who left, their figures.

    ``cpu_percent`` is the worker's CPU time over the wall time since the
    previous refresh, as % of one core (None on a worker's first sample).
    """

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._previous: dict[int, tuple[float, float]] = {}
        self.exits = 0
        self.last: list[WorkerSample] = []

    def refresh(self, arbiter_pid: int | None) -> list[WorkerSample]:
        """Sample every worker now; workers that vanished since the last call count as exits."""
        children: dict[int, psutil.Process] = {}
        if arbiter_pid is not None:
            try:
                children = {p.pid: p for p in psutil.Process(arbiter_pid).children()}
            except psutil.NoSuchProcess:
                pass
        for pid in set(self._procs) - set(children):
            self._forget(pid)
        for pid, proc in children.items():
            self._procs.setdefault(pid, proc)
        now = time.monotonic()
        samples = []
        for pid, proc in list(self._procs.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu = times.user + times.system
                    sample = WorkerSample(
                        pid=pid,
                        started=proc.create_time(),
                        cpu_seconds=cpu,
                        cpu_percent=None,
                        rss_bytes=proc.memory_info().rss,
                        status=proc.status(),
                    )
            except psutil.NoSuchProcess:
                self._forget(pid)
                continue
            before = self._previous.get(pid)
            if before is not None and now > before[0]:
                sample.cpu_percent = max(0.0, (cpu - before[1]) / (now - before[0]) * 100.0)
            self._previous[pid] = (now, cpu)
            samples.append(sample)
        self.last = samples
        return samples

    def _forget(self, pid: int) -> None:
        self._procs.pop(pid, None)
        self._previous.pop(pid, None)
        self.exits += 1
        log.info("http worker %s is gone", pid, extra={"worker_pid": pid})

    def rows(self) -> list[dict[str, Any]]:
        """Status rows of the last refresh."""
        now = time.time()
        return [
            {
                "group": "http-worker",
                "name": f"worker-{s.pid}",
                "pid": s.pid,
                "state": s.status,
                "uptime": round(now - s.started, 1),
                "cpu_percent": None if s.cpu_percent is None else round(s.cpu_percent, 1),
                "rss_bytes": s.rss_bytes,
                "restarts": None,
            }
            for s in self.last
        ]
