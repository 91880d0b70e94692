"""The supervisor's view of gunicorn's workers: the arbiter's children, read with psutil."""

from __future__ import annotations

import time
from typing import Any

import psutil

from cluster.observability.process import CpuMeter, Reading

WorkerSample = Reading


class HttpWorkers:
    """The arbiter's workers and their figures at the last refresh.

    ``cpu_percent`` is the worker's CPU time over the wall time since the
    previous refresh, as % of one core (None on a worker's first sample).
    Why a worker left is the arbiter's to say (``cluster.arbiter.exits``).
    """

    def __init__(self) -> None:
        self._meter = CpuMeter()
        self.last: list[WorkerSample] = []

    def refresh(self, arbiter_pid: int | None) -> list[WorkerSample]:
        """Sample every worker now."""
        pids: list[int] = []
        if arbiter_pid is not None:
            try:
                pids = [p.pid for p in psutil.Process(arbiter_pid).children()]
            except psutil.NoSuchProcess:
                pass
        self.last = sorted(self._meter.read(pids).values(), key=lambda r: (r.started, r.pid))
        return self.last

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
