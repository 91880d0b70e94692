"""What the autoscaler measures: worker CPU over its own interval, the machine's CPU and memory, worker deaths.

Worker CPU is measured here over the whole ``sample_interval`` from
``cpu_times`` deltas, rather than taken from the supervisor's 1-second view
(``HttpWorkers``): the CPU a worker used in the whole interval is the load,
a 1-second snapshot is one point of it. The machine's CPU is computed from
``psutil.cpu_times()`` deltas kept here, not ``psutil.cpu_percent(None)``,
whose baseline is global to the process and shared with anyone else
(the monitor) who calls it. The listen backlog is read from /proc/net/tcp,
where a listening socket's rx_queue is its accept queue: the supervisor
does not hold gunicorn's sockets, so it cannot ask TCP_INFO.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil


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


class WorkerCpuMeter:
    """Per-worker CPU from ``cpu_times`` deltas between calls; young workers are left out."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._last: dict[int, tuple[float, float]] = {}

    def measure(self, pids: Iterable[int], warmup: float, now: float | None = None) -> WorkerCpu:
        """CPU since the previous call of every worker older than ``warmup`` seconds."""
        now = time.monotonic() if now is None else now
        wall = time.time()
        wanted = set(pids)
        for gone in set(self._procs) - wanted:
            self._procs.pop(gone, None)
            self._last.pop(gone, None)
        per_worker: dict[int, float] = {}
        warming = 0
        for pid in wanted:
            try:
                proc = self._procs.setdefault(pid, psutil.Process(pid))
                with proc.oneshot():
                    times = proc.cpu_times()
                    age = wall - proc.create_time()
            except psutil.Error:
                self._procs.pop(pid, None)
                continue
            cpu = times.user + times.system
            before = self._last.get(pid)
            self._last[pid] = (now, cpu)
            if age < warmup or before is None or now <= before[0]:
                # Booting (imports, app build) is CPU the load did not cause.
                warming += 1
                continue
            per_worker[pid] = max(0.0, (cpu - before[1]) / (now - before[0]) * 100.0)
        return WorkerCpu(per_worker, warming)


class SystemCpu:
    """The whole machine's busy CPU, % of all cores, since the previous call."""

    def __init__(self) -> None:
        self._last = psutil.cpu_times()

    def measure(self) -> float:
        times = psutil.cpu_times()
        before, self._last = self._last, times
        total = sum(times) - sum(before)
        idle = (times.idle + getattr(times, "iowait", 0.0)) - (before.idle + getattr(before, "iowait", 0.0))
        return 0.0 if total <= 0 else max(0.0, min(100.0, (total - idle) / total * 100.0))


def free_memory_mb() -> float:
    """Memory available to new processes without swapping."""
    return psutil.virtual_memory().available / (1024 * 1024)


class UnexpectedExits:
    """Worker deaths nobody asked for, within a window: the workers' crash-loop signal.

    Every retirement the supervisor orders (scale-down, reload, recycling) is
    announced with ``expect``; exits beyond those are crashes.
    """

    def __init__(self, deaths: int, window: float) -> None:
        self.deaths = deaths
        self.window = window
        self._expected = 0
        self._seen: int | None = None
        self._crashes: deque[float] = deque()

    def expect(self, count: int) -> None:
        self._expected += max(0, count)

    def observe(self, total_exits: int, now: float) -> bool:
        """Feed the running count of worker exits; True while crash-looping."""
        new = 0 if self._seen is None else max(0, total_exits - self._seen)
        self._seen = total_exits
        explained = min(new, self._expected)
        self._expected -= explained
        self._crashes.extend([now] * (new - explained))
        while self._crashes and now - self._crashes[0] > self.window:
            self._crashes.popleft()
        return len(self._crashes) >= self.deaths


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
