"""Open-loop pacing (coordinated omission), stress ramps and the breaking point."""

from __future__ import annotations

import pytest

from cluster.loadgen.aggregate import build_report
from cluster.loadgen.mix import Endpoint
from cluster.loadgen.orchestrator import BenchConfig, worker_plans
from cluster.loadgen.recorder import Recorder
from cluster.loadgen.schedule import Pacer, breaking_point, split, stress_steps

STALL_FROM, STALL_TO = 5.0, 6.0


def _stalling_server(send: float) -> float:
    """Answers in 1 ms, except that nothing is answered during [5 s, 6 s): it all waits until 6 s."""
    start = STALL_TO if STALL_FROM <= send < STALL_TO else send
    return start + 0.001


def _simulate_open_loop(rate: float, seconds: float) -> tuple[dict, dict]:
    """One wrk2-style connection against the stalling server: (corrected, uncorrected) latency in ms."""
    pacer = Pacer(0.0, rate)
    corrected, uncorrected = Recorder(0.0), Recorder(0.0)
    free_at = 0.0
    while pacer.next_due() < seconds:
        due = pacer.take()
        send = max(due, free_at)  # one connection: it sends when due, or as soon as it is free
        done = _stalling_server(send)
        corrected.record(done - due, None, done)
        uncorrected.record(done - send, None, done)
        free_at = done
    results = [{"index": 0, **r.result(), "ended": seconds, "cpu_s": 0.0, "wall_s": seconds}
               for r in (corrected, uncorrected)]
    settings = {"url": "http://x", "mode": "endurance", "target_rps": rate}
    return (build_report(settings, [results[0]], 0.0)["latency_ms"],
            build_report(settings, [results[1]], 0.0)["latency_ms"])


def test_a_one_second_stall_shows_in_p99_when_counted_from_the_schedule() -> None:
    corrected, uncorrected = _simulate_open_loop(rate=100.0, seconds=10.0)
    # 100 of 1000 requests were due during the stall: they waited up to a second.
    assert corrected["p99"] >= 500.0
    assert corrected["p50"] <= 2.0 and corrected["max"] >= 990.0
    # Counted from the actual send, the stall hides behind one slow request (coordinated omission).
    assert uncorrected["p99"] <= 2.0
    assert uncorrected["max"] >= 990.0


def test_pacer_due_times() -> None:
    pacer = Pacer(10.0, 4.0)
    assert [pacer.take() for _ in range(3)] == [10.0, 10.25, 10.5]
    assert pacer.next_due() == 10.75
    with pytest.raises(ValueError):
        Pacer(0.0, 0.0)


def test_split_is_even_and_complete() -> None:
    assert split(10, 3) == [4, 3, 3]
    assert split(2, 4) == [1, 1, 0, 0]


def test_stress_steps_ramp_to_the_max() -> None:
    steps = stress_steps(10, 45, 10, 5.0)
    assert [s.users for s in steps] == [10, 20, 30, 40, 45]
    assert (steps[2].starts_at, steps[2].ends_at) == (10.0, 15.0)
    assert [s.users for s in stress_steps(5, 5, 1, 1.0)] == [5]
    with pytest.raises(ValueError):
        stress_steps(10, 5, 1, 1.0)


def _step(number: int, users: int, p95: float | None, error_pct: float, requests: int = 1000) -> dict:
    return {"step": number, "users": users, "requests": requests, "rps": requests / 10,
            "error_pct": error_pct, "latency_ms": {"p95": p95}}


def test_breaking_point_is_the_first_step_over_the_p95_slo() -> None:
    steps = [_step(1, 10, 20.0, 0.0), _step(2, 20, 45.0, 0.0), _step(3, 30, 80.0, 0.0), _step(4, 40, 300.0, 5.0)]
    point = breaking_point(steps, slo_p95_ms=50.0, slo_errors_pct=1.0)
    assert point["step"] == 3 and point["users"] == 30
    assert point["reasons"] == ["p95 80.0 ms > 50.0 ms"]
    assert point["last_good_users"] == 20 and point["last_good_rps"] == 100.0


def test_breaking_point_on_errors_alone() -> None:
    steps = [_step(1, 10, 900.0, 0.0), _step(2, 20, 900.0, 2.5)]
    point = breaking_point(steps, slo_p95_ms=None, slo_errors_pct=1.0)
    assert point["step"] == 2 and point["reasons"] == ["errors 2.5 % > 1.0 %"]


def test_no_breaking_point_when_every_step_holds_and_first_step_can_break() -> None:
    steps = [_step(1, 10, 20.0, 0.0), _step(2, 20, 30.0, 0.5)]
    assert breaking_point(steps, 50.0, 1.0) is None
    first = breaking_point([_step(1, 10, 60.0, 0.0)], 50.0, None)
    assert first["step"] == 1 and first["last_good_users"] is None
    silent = breaking_point([_step(1, 10, None, 0.0, requests=0)], 50.0, 1.0)
    assert silent["reasons"] == ["no request completed"]


def test_worker_plans_share_users_and_rate() -> None:
    endpoint = [Endpoint("GET", "http://x/")]
    plans = worker_plans(BenchConfig("http://x/", endpoint, mode="endurance", users=5, rps=1000.0, duration=5, procs=2))
    assert [p.users for p in plans] == [[3], [2]]
    assert sum(p.rate for p in plans) == pytest.approx(1000.0)
    stress = worker_plans(BenchConfig("http://x/", endpoint, mode="stress", steps=stress_steps(1, 5, 2, 1.0), procs=2))
    assert [p.users for p in stress] == [[1, 2, 3], [0, 1, 2]]
    few = worker_plans(BenchConfig("http://x/", endpoint, users=1, procs=8))
    assert len(few) == 1
