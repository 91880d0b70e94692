"""Which worker a scale-down retires."""

from __future__ import annotations

from cluster.arbiter.retire import CpuRates, WorkerLoad, retire_order
from cluster.observability.process import CpuMeter


def test_the_least_busy_worker_goes_first_not_the_oldest() -> None:
    workers = [WorkerLoad(10, 1, 0.9, False), WorkerLoad(11, 2, 0.05, False), WorkerLoad(12, 3, 0.5, False)]
    assert retire_order(workers) == [11, 12, 10]


def test_among_equally_idle_workers_the_oldest_goes_first() -> None:
    workers = [WorkerLoad(12, 3, 0.001, False), WorkerLoad(10, 1, 0.0, False), WorkerLoad(11, 2, 0.003, False)]
    assert retire_order(workers) == [10, 11, 12]


def test_workers_of_a_previous_generation_go_before_any_new_one() -> None:
    workers = [WorkerLoad(20, 5, 0.0, False), WorkerLoad(10, 1, 0.9, True), WorkerLoad(11, 2, 0.8, True)]
    assert retire_order(workers) == [10, 11, 20]


def test_cpu_rates_are_cpu_seconds_per_second_between_refreshes() -> None:
    cpu = {7: 10.0}
    rates = CpuRates(every=1.0, meter=CpuMeter(lambda pid: (cpu[pid], 0.0, 0, "running")))
    rates.refresh([7], 100.0)
    assert rates.rate(7) == 0.0
    cpu[7] = 10.5
    rates.refresh([7], 100.5)  # too soon: the last rates stand
    assert rates.rate(7) == 0.0
    rates.refresh([7], 102.0)
    assert rates.rate(7) == 0.25
    rates.refresh([], 104.0)
    assert rates.rate(7) == 0.0
