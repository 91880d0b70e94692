"""Runs a benchmark on several generator processes: the plans, the common start, progress, the merge."""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.loadgen.aggregate import build_report
from cluster.loadgen.mix import Endpoint
from cluster.loadgen.runner import WorkerPlan, clock, process_main
from cluster.loadgen.schedule import Step, split

START_DELAY = 0.1  # seconds between "all processes ready" and the first request
READY_TIMEOUT = 60.0
MODES = ("load", "stress", "endurance")


class BenchError(RuntimeError):
    """The run could not be done (a generator process failed); the message says why."""


@dataclass
class BenchConfig:
    url: str
    endpoints: list[Endpoint]
    mode: str = "load"
    users: int = 10
    requests: int | None = None
    duration: float | None = 10.0
    rps: float | None = None
    steps: list[Step] = field(default_factory=list)
    timeout: float = 10.0
    verify_tls: bool = True
    procs: int = 0  # 0: one per core
    slo_p95_ms: float | None = None
    slo_errors_pct: float | None = None

    @property
    def peak_users(self) -> int:
        return max(s.users for s in self.steps) if self.mode == "stress" else self.users

    @property
    def planned_seconds(self) -> float | None:
        """How long the run is planned to last; None when it lasts until each user sent ``requests``."""
        if self.mode == "stress":
            return self.steps[-1].ends_at
        return None if self.mode == "load" and self.requests else self.duration


@dataclass
class Progress:
    elapsed: float
    requests: int
    errors: int


def default_procs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_plans(config: BenchConfig) -> list[WorkerPlan]:
    """Each process's share: users split evenly, the rate in proportion to the users."""
    procs = max(1, min(config.procs or default_procs(), config.peak_users))
    if config.mode == "stress":
        per_step = [split(step.users, procs) for step in config.steps]
        shares = [[counts[p] for counts in per_step] for p in range(procs)]
        duration = config.steps[0].ends_at - config.steps[0].starts_at
    else:
        shares = [[n] for n in split(config.users, procs)]
        duration = config.duration
    plans = []
    for index, users in enumerate(shares):
        rate = config.rps * users[0] / config.users if config.mode == "endurance" and config.rps else None
        plans.append(WorkerPlan(
            endpoints=config.endpoints, users=users, phase_duration=duration,
            requests_per_user=config.requests if config.mode == "load" else None,
            rate=rate, timeout=config.timeout, seed=index, verify_tls=config.verify_tls,
        ))
    return plans


def settings_echo(config: BenchConfig, procs: int) -> dict[str, Any]:
    return {
        "url": config.url, "mode": config.mode, "procs": procs,
        "users": config.peak_users,
        "requests_per_user": config.requests if config.mode == "load" else None,
        "duration_s": config.planned_seconds,
        "target_rps": config.rps if config.mode == "endurance" else None,
        "slo_p95_ms": config.slo_p95_ms, "slo_errors_pct": config.slo_errors_pct,
        "endpoints": [{"method": e.method, "url": e.url, "weight": e.weight} for e in config.endpoints],
    }


class _Run:
    def __init__(self, plans: list[WorkerPlan]) -> None:
        context = multiprocessing.get_context("fork")  # before any thread or loop of ours: fast and safe
        self.events = context.Queue()
        self.go = context.Event()
        self.stop = context.Event()
        self.start_value = context.Value("d", 0.0)
        self.procs = [context.Process(target=process_main, name=f"cluster-bench-{i}", daemon=True,
                                      args=(plan, i, self.events, self.go, self.start_value, self.stop))
                      for i, plan in enumerate(plans)]
        self.counts: dict[int, tuple[int, int]] = {}
        self.results: dict[int, dict[str, Any]] = {}

    def _event(self, timeout: float) -> tuple[Any, ...] | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _check_alive(self) -> None:
        for index, proc in enumerate(self.procs):
            if index not in self.results and proc.exitcode is not None:
                raise BenchError(f"generator process {index} exited with code {proc.exitcode} before its result")

    def _handle(self, event: tuple[Any, ...]) -> str:
        kind, index = event[0], event[1]
        if kind == "error":
            raise BenchError(f"generator process {index} failed: {event[2]}")
        if kind == "progress":
            self.counts[index] = (event[2], event[3])
        elif kind == "result":
            self.results[index] = event[2]
        return kind

    def start(self) -> float:
        for proc in self.procs:
            proc.start()
        ready = 0
        deadline = time.monotonic() + READY_TIMEOUT
        while ready < len(self.procs):
            if time.monotonic() > deadline:
                raise BenchError("generator processes did not start in time")
            event = self._event(0.2)
            if event is None:
                self._check_alive()
            elif self._handle(event) == "ready":
                ready += 1
        start_at = clock() + START_DELAY
        self.start_value.value = start_at
        self.go.set()
        return start_at

    def collect(self, start_at: float, on_progress: Callable[[Progress], None] | None) -> bool:
        """Wait for every result; Ctrl-C asks the processes to stop and still collects. True if interrupted."""
        interrupted = False
        while len(self.results) < len(self.procs):
            try:
                event = self._event(0.2)
                if event is None:
                    self._check_alive()
                else:
                    self._handle(event)
                if on_progress is not None:
                    on_progress(Progress(max(0.0, clock() - start_at),
                                         sum(c[0] for c in self.counts.values()),
                                         sum(c[1] for c in self.counts.values())))
            except KeyboardInterrupt:
                interrupted = True
                self.stop.set()
        return interrupted

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def run_bench(config: BenchConfig, on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its report (see ``aggregate.build_report``)."""
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    plans = worker_plans(config)
    run = _Run(plans)
    try:
        start_at = run.start()
        interrupted = run.collect(start_at, on_progress)
    finally:
        run.close()
    steps = None
    if config.mode == "stress":
        steps = [{"users": s.users, "duration": s.ends_at - s.starts_at} for s in config.steps]
    results = [run.results[i] for i in range(len(plans))]
    return build_report(settings_echo(config, len(plans)), results, start_at, steps, interrupted)
