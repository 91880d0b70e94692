"""What the autoscaler measures: worker CPU over its own interval, the machine's CPU and memory.

Worker CPU is measured over the whole ``sample_interval`` by the autoscaler's
own ``CpuMeter``, rather than taken from the supervisor's 1-second view
(``HttpWorkers``): the CPU a worker used in the whole interval is the load,
a 1-second snapshot is one point of it. The machine's CPU is computed from
``psutil.cpu_times()`` deltas kept here, not ``psutil.cpu_percent(None)``,
whose baseline is global to the process and shared with anyone else
(the monitor) who calls it. The listen backlog is read from /proc/net/tcp,
where a listening socket's rx_queue is its accept queue: the supervisor
does not hold gunicorn's sockets, so it cannot ask TCP_INFO.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from cluster.observability.process import Reading


@dataclass(frozen=True)
class WorkerCpu:
    """CPU of the warmed-up workers over the last interval, % of one core."""

    per_worker: dict[int, float]
    warming: int

    @property
    def mean(self) -> float | None:
        return sum(self.per_worker.values()) / len(self.per_worker) if self.per_worker else None

    @property
    def max(self) -> float | None:
        return max(self.per_worker.values()) if self.per_worker else None


def worker_cpu(readings: Iterable[Reading], warmup: float, wall: float) -> WorkerCpu:
    """The CPU of workers older than ``warmup`` seconds at ``wall`` (time.time()) with a measured interval."""
    per_worker: dict[int, float] = {}
    warming = 0
    for reading in readings:
        if wall - reading.started < warmup or reading.cpu_percent is None:
            # Booting (imports, app build) is CPU the load did not cause.
            warming += 1
        else:
            per_worker[reading.pid] = reading.cpu_percent
    return WorkerCpu(per_worker, warming)


class SystemCpu:
    """The whole machine's busy CPU, % of all cores, since the previous call.

    ``cpu_times`` is psutil's by default (a sequence of named tick counts
    with ``idle`` and, on Linux, ``iowait``).
    """

    def __init__(self, cpu_times: Callable[[], Any] = psutil.cpu_times) -> None:
        self._cpu_times = cpu_times
        self._last = cpu_times()

    def measure(self) -> float:
        times = self._cpu_times()
        before, self._last = self._last, times
        total = sum(times) - sum(before)
        idle = (times.idle + getattr(times, "iowait", 0.0)) - (before.idle + getattr(before, "iowait", 0.0))
        return 0.0 if total <= 0 else max(0.0, min(100.0, (total - idle) / total * 100.0))


def free_memory_mb() -> float:
    """Memory available to new processes without swapping."""
    return psutil.virtual_memory().available / (1024 * 1024)


_TCP_LISTEN = "0A"


def parse_listen_backlog(table: str, ports: set[int]) -> int:
    """Sum of the accept queues of the LISTEN sockets on ``ports`` in a /proc/net/tcp{,6} table."""
    total = 0
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5 or fields[3] != _TCP_LISTEN:
            continue
        port = int(fields[1].rsplit(":", 1)[1], 16)
        if port in ports:
            total += int(fields[4].split(":")[1], 16)
    return total


def bound_ports(binds: Iterable[str]) -> set[int]:
    """The TCP ports of gunicorn bind addresses (unix sockets have none)."""
    return {int(b.rpartition(":")[2]) for b in binds if not b.startswith("unix:")}


def listen_backlog(ports: set[int], proc_net: Path = Path("/proc/net")) -> int | None:
    """Connections waiting to be accepted on ``ports``; None when there is nothing to read."""
    if not ports:
        return None
    tables = []
    for name in ("tcp", "tcp6"):
        try:
            tables.append((proc_net / name).read_text())
        except OSError:
            continue
    return sum(parse_listen_backlog(t, ports) for t in tables) if tables else None
