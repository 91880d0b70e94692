"""Which worker a scale-down retires."""

from __future__ import annotations

import os
import time

from cluster.arbiter.retire import CpuRates, WorkerLoad, retire_order


def test_the_least_busy_worker_goes_first_not_the_oldest() -> None:
    workers = [WorkerLoad(10, 1, 0.9, False), WorkerLoad(11, 2, 0.05, False), WorkerLoad(12, 3, 0.5, False)]
    assert retire_order(workers) == [11, 12, 10]


def test_among_equally_idle_workers_the_oldest_goes_first() -> None:
    workers = [WorkerLoad(12, 3, 0.001, False), WorkerLoad(10, 1, 0.0, False), WorkerLoad(11, 2, 0.003, False)]
    assert retire_order(workers) == [10, 11, 12]


def test_workers_of_a_previous_generation_go_before_any_new_one() -> None:
    workers = [WorkerLoad(20, 5, 0.0, False), WorkerLoad(10, 1, 0.9, True), WorkerLoad(11, 2, 0.8, True)]
    assert retire_order(workers) == [10, 11, 20]


def test_cpu_rates_measure_this_process_between_refreshes() -> None:
    rates = CpuRates(every=0.0)
    pid = os.getpid()
    rates.refresh([pid], time.monotonic())
    assert rates.rate(pid) == 0.0
    started = time.monotonic()
    while time.monotonic() - started < 0.3:
        pass
    rates.refresh([pid], time.monotonic())
    assert rates.rate(pid) > 0.2
    rates.refresh([], time.monotonic())
    assert rates.rate(pid) == 0.0
