"""Which worker a scale-down retires."""

from __future__ import annotations

from cluster.arbiter.retire import CpuRates, WorkerLoad, retire_order, to_retire, to_spawn
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


def test_an_old_worker_leaves_only_once_a_new_one_serves_in_its_place() -> None:
    old = [WorkerLoad(10, 1, 0.5, True), WorkerLoad(11, 2, 0.1, True)]
    booting = [WorkerLoad(20, 3, 0.0, False, ready=False), WorkerLoad(21, 4, 0.0, False, ready=False)]
    assert to_spawn(old + booting, 2) == 0
    assert to_retire(old + booting, 2) == []
    one_up = [WorkerLoad(20, 3, 0.0, False, ready=True), booting[1]]
    assert to_retire(old + one_up, 2) == [10]
    both_up = [WorkerLoad(20, 3, 0.0, False), WorkerLoad(21, 4, 0.0, False)]
    assert to_retire(old + both_up, 2) == [10, 11]


def test_after_a_reload_the_new_generation_is_spawned_to_the_target_and_a_scale_down_takes_the_idlest() -> None:
    old = [WorkerLoad(10, 1, 0.5, True)]
    assert to_spawn(old, 3) == 3
    fresh = [WorkerLoad(20, 3, 0.9, False), WorkerLoad(21, 4, 0.1, False), WorkerLoad(22, 5, 0.5, False)]
    assert to_spawn(fresh, 3) == 0 and to_retire(fresh, 3) == []
    assert to_retire(fresh, 2) == [21]
    assert to_retire(fresh, 1) == [21, 22]
