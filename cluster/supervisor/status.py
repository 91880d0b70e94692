"""The rows of `cluster status` and of the per-process metrics: one per process, with CPU and RSS."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from cluster.supervisor.children import SupervisedChild
from cluster.supervisor.http_workers import HttpWorkers
from cluster.observability.process import CpuMeter, Reading


def figures(reading: Reading | None) -> dict[str, Any]:
    if reading is None:
        return {"cpu_percent": None, "rss_bytes": None}
    cpu = None if reading.cpu_percent is None else round(reading.cpu_percent, 1)
    return {"cpu_percent": cpu, "rss_bytes": reading.rss_bytes}


class ProcessRows:
    """Reads the supervisor and its children with one meter, so each CPU figure covers the time between reads."""

    def __init__(self, started: float) -> None:
        self.started = started
        self._meter = CpuMeter()

    def supervisor_and_children(self, children: dict[str, SupervisedChild], workers: HttpWorkers) -> list[dict[str, Any]]:
        """The supervisor's own row, then `children`'s."""
        me = os.getpid()
        readings = self._read(me, children.values())
        row = {"group": "supervisor", "name": "supervisor", "pid": me, "state": "running",
               "uptime": round(time.time() - self.started, 1), "restarts": None, **figures(readings.get(me))}
        return [row, *self._rows(children, workers, readings)]

    def children(self, children: dict[str, SupervisedChild], workers: HttpWorkers) -> list[dict[str, Any]]:
        """The HTTP tier's arbiter, its workers, then the other children."""
        return self._rows(children, workers, self._read(os.getpid(), children.values()))

    def _read(self, me: int, children: Iterable[SupervisedChild]) -> dict[int, Reading]:
        return self._meter.read([me, *(c.pid for c in children if c.pid)])

    @staticmethod
    def _rows(children: dict[str, SupervisedChild], workers: HttpWorkers,
              readings: dict[int, Reading]) -> list[dict[str, Any]]:
        def row(child: SupervisedChild) -> dict[str, Any]:
            return {**child.status(), **figures(readings.get(child.pid) if child.pid else None)}

        others = [child for name, child in children.items() if name != "http"]
        return [row(children["http"]), *workers.rows(), *(row(c) for c in others)]
