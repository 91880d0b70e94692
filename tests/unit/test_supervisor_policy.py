"""The supervisor's decisions without processes: exit reports, health probes, scaling requests, the command loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from cluster.arbiter.exits import decode, encode, exit_reason
from cluster.supervisor.command_loop import CommandLoop
from cluster.supervisor.health import HealthState
from cluster.supervisor.scaling import WorkerRuntime, autoscaled, nudge, rescale
from cluster.supervisor.worker_exits import ExitTally, as_requested
from tests.support import run_async


def test_the_arbiter_names_each_exit_by_what_it_knows() -> None:
    def reason(**known: bool) -> str:
        return exit_reason(**{"stopping": False, "retiring": False, "stale": False, "timed_out": False, **known})

    assert reason() == "crashed"
    assert reason(retiring=True) == "retired"
    assert reason(stale=True) == "reload"
    assert reason(timed_out=True) == "timeout"
    assert reason(stopping=True, retiring=True) == "shutdown"


def test_reports_round_trip_and_foreign_datagrams_are_refused() -> None:
    assert decode(encode(123, "retired")) == (123, "retired")
    assert decode(b"not json") is None
    assert decode(b'{"pid": 1, "reason": "bored"}') is None
    assert decode(b'{"pid": "1", "reason": "crashed"}') is None


def test_only_failures_within_the_window_make_a_crash_loop() -> None:
    tally = ExitTally(deaths=3, window=60)
    for at in range(5):
        tally.record("retired", float(at))
        tally.record("reload", float(at))
    assert not tally.crash_looping(5.0)
    tally.record("crashed", 10.0)
    tally.record("timeout", 20.0)
    assert not tally.crash_looping(20.0)
    tally.record("crashed", 30.0)
    assert tally.crash_looping(30.0)
    assert not tally.crash_looping(75.0)
    assert tally.total == 13 and tally.by_reason["crashed"] == 2


def test_an_exit_the_supervisor_asked_for_is_recycled_and_feeds_no_crash_loop() -> None:
    tally = ExitTally(deaths=2, window=60)
    for at in range(6):
        tally.record(as_requested("crashed", recycled=True), float(at))
    tally.record(as_requested("timeout", recycled=True), 6.0)  # it outlived its graceful stop: still ours
    assert tally.by_reason == {"recycled": 7} and not tally.crash_looping(7.0)
    assert [as_requested(r, recycled=True) for r in ("retired", "reload", "shutdown")] == ["retired", "reload", "shutdown"]
    assert as_requested("crashed", recycled=False) == "crashed"


def test_failed_probes_in_a_row_call_for_one_reload_but_not_while_booting() -> None:
    health = HealthState(failures_before_reload=2)
    assert not health.record(False, "refused", booting=True)
    assert not health.record(False, "refused", booting=True)
    assert not health.record(False, "refused")
    assert health.record(False, "refused")
    assert health.reloads == 1 and health.consecutive_failures == 0
    assert not health.record(False, "refused")
    assert not health.record(True, "200 pass")
    assert not health.record(False, "refused")


def test_scale_requests_move_bounds_target_and_mode() -> None:
    start = WorkerRuntime.initial(1, 4)
    assert (start.target, start.mode) == (1, "auto")
    pinned = rescale(start, workers=3)
    assert (pinned.target, pinned.mode) == (3, "manual")
    assert autoscaled(pinned, 1) == pinned  # a pin wins over the autoscaler
    narrowed = rescale(pinned, maximum=2)
    assert (narrowed.maximum, narrowed.target, narrowed.mode) == (2, 2, "manual")
    assert rescale(narrowed, auto=True).mode == "auto"
    assert autoscaled(rescale(narrowed, auto=True), 9).target == 2
    assert nudge(nudge(start, +1), +5).target == 4 and nudge(start, -1).target == 1
    fixed = WorkerRuntime.initial(2, 2)
    assert fixed.mode == "fixed" and rescale(fixed, maximum=3).mode == "auto"
    for bad in ({"workers": 9}, {"minimum": 0}, {"minimum": 5, "maximum": 4}):
        with pytest.raises(ValueError):
            rescale(start, **bad)


def test_the_command_loop_runs_one_command_at_a_time_in_order() -> None:
    @dataclass(frozen=True)
    class Work:
        name: str

    @dataclass(frozen=True)
    class Halt:
        pass

    trace: list[str] = []

    async def work(command: Work) -> str:
        trace.append(f"start {command.name}")
        await asyncio.sleep(0)  # a handler that yields must still not overlap the next one
        trace.append(f"end {command.name}")
        if command.name == "bad":
            raise ValueError("refused")
        return command.name.upper()

    async def halt(command: Halt) -> None:
        trace.append("halt")

    async def scenario() -> tuple[Any, ...]:
        loop = CommandLoop({Work: work, Halt: halt})
        first, second, bad = loop.submit(Work("a")), loop.submit(Work("b")), loop.submit(Work("bad"))
        loop.post(Halt())
        late = loop.submit(Work("never"))
        await loop.run(until=Halt)
        loop.close()
        after = loop.submit(Work("closed"))
        return await first, await second, await asyncio.gather(bad, return_exceptions=True), late, after

    first, second, (error,), late, after = run_async(scenario)
    assert (first, second) == ("A", "B") and isinstance(error, ValueError)
    assert trace == ["start a", "end a", "start b", "end b", "start bad", "end bad", "halt"]
    assert late.cancelled() and after.cancelled()
