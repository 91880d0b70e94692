"""The consumer's pure decisions (running marks, stuck jobs, recovery, upkeep cadence) and how the loop
watchdog learns which job in hand holds the loop: no Redis, no process, no sleep."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import pytest

from cluster.queues.acks import split_starts
from cluster.queues.envelope import Envelope
from cluster.queues.in_hand import Running, on_the_loop
from cluster.queues.registry import JobSpec
from cluster.queues.recovery import FORGET_IDLE_MS, claim_reason, forgettable
from cluster.queues.stuck_jobs import overdue
from cluster.queues.upkeep import due
from tests.support import run_async


def test_starts_split_into_due_and_young_and_finished_jobs_skip_the_running_mark() -> None:
    starts = [("1-0", "a", 100.0), ("2-0", "b", 101.0), ("3-0", "c", 102.0), ("4-0", "d", 103.0)]
    began = {"1-0": 10.0, "2-0": 10.3, "4-0": 10.45}  # 3-0 is finished: not in hand any more
    due_, young, wait = split_starts(starts, began, now=10.5, mark_after=0.5)
    assert due_ == [("1-0", "a", 100.0)]
    assert young == [("2-0", "b", 101.0), ("4-0", "d", 103.0)]
    assert wait == pytest.approx(0.3), "the timer is set for the first young job"


def test_no_young_start_sets_no_timer() -> None:
    assert split_starts([("1-0", "a", 1.0)], {"1-0": 0.0}, now=2.0, mark_after=0.5) == ([("1-0", "a", 1.0)], [], None)
    assert split_starts([], {}, now=2.0, mark_after=0.5) == ([], [], None)
    # running_mark_after = 0: every job still running is marked at the next flush
    assert split_starts([("1-0", "a", 1.0)], {"1-0": 2.0}, now=2.0, mark_after=0.0)[0] == [("1-0", "a", 1.0)]


def test_a_job_is_stuck_only_past_its_timeout_plus_the_kill_grace() -> None:
    assert overdue(started=0.0, timeout=5.0, kill_grace=2.0, now=6.0) is None
    assert overdue(started=0.0, timeout=5.0, kill_grace=2.0, now=7.0) is None, "at the grace exactly it may still end"
    assert overdue(started=0.0, timeout=5.0, kill_grace=2.0, now=7.5) == pytest.approx(2.5)
    assert overdue(started=0.0, timeout=5.0, kill_grace=0.0, now=5.1) == pytest.approx(0.1)


def test_only_idle_consumers_holding_nothing_are_forgotten_and_never_ourselves() -> None:
    long_idle = FORGET_IDLE_MS + 1
    consumers = [{"name": "me", "pending": 0, "idle": long_idle},
                 {"name": "busy", "pending": 2, "idle": long_idle},
                 {"name": "recent", "pending": 0, "idle": 1000},
                 {"name": "gone", "pending": 0, "idle": long_idle}]
    assert forgettable(consumers, "me", lease=10.0) == ["gone"]
    # a long lease stretches the idle limit to ten leases
    assert forgettable(consumers, "me", lease=FORGET_IDLE_MS / 1000) == []


def test_the_reason_of_a_claim_says_whether_the_death_was_planned() -> None:
    assert claim_reason("c1", planned=False) == "its consumer c1 died"
    assert "killed on purpose" in claim_reason("c1", planned=True)


def test_upkeep_chores_run_on_their_own_cadence_in_order() -> None:
    every = {"reclaim": 0.5, "gauges": 2.0, "reap": 5.0}
    assert due(1000.0, {}, every) == ["reclaim", "gauges", "reap"], "all run at the first turn"
    last = {"reclaim": 1000.0, "gauges": 1000.0, "reap": 1000.0}
    assert due(1000.5, last, every) == ["reclaim"]
    assert due(1002.0, last, every) == ["reclaim", "gauges"]
    assert due(1000.2, last, every) == []


def _in_hand(tasks: dict[str, asyncio.Task[None]]) -> dict[str, Running]:
    return {entry_id: Running(cast(Envelope, None), cast(JobSpec, None), 5.0, 0.0, 0.0, task)
            for entry_id, task in tasks.items()}


def test_the_job_on_the_loop_is_the_one_whose_step_runs_and_none_between_steps() -> None:
    seen: list[tuple[str, str | None]] = []
    running: dict[str, Running] = {}

    async def job(name: str, gate: asyncio.Future[None]) -> None:
        seen.append((name, on_the_loop(running)))
        await gate
        seen.append((name, on_the_loop(running)))

    async def main() -> None:
        gates = [asyncio.get_running_loop().create_future() for _ in range(2)]
        running.update(_in_hand({f"{i}-0": asyncio.create_task(job(f"job{i}", gates[i])) for i in range(2)}))
        await asyncio.sleep(0)  # one turn of the loop: both jobs run their first step
        seen.append(("outside", on_the_loop(running)))
        gates[1].set_result(None)
        gates[0].set_result(None)
        await asyncio.gather(*(job.task for job in running.values() if job.task))

    run_async(main)
    assert seen == [("job0", "0-0"), ("job1", "1-0"), ("outside", None), ("job1", "1-0"), ("job0", "0-0")]


def test_another_thread_sees_which_job_blocks_the_loop() -> None:
    """What the loop watchdog does: the loop is held by a job's blocking call, the thread asks."""
    running: dict[str, Running] = {}
    blocking, answered = threading.Event(), threading.Event()
    answer: list[str | None] = []

    def ask() -> None:
        blocking.wait()
        answer.append(on_the_loop(running))
        answered.set()

    async def blocks() -> None:
        blocking.set()
        answered.wait()  # a blocking call: the loop stops turning until the thread has answered

    async def waits(gate: asyncio.Future[None]) -> None:
        await gate

    async def main() -> None:
        gate = asyncio.get_running_loop().create_future()
        running.update(_in_hand({"1-0": asyncio.create_task(waits(gate)), "2-0": asyncio.create_task(blocks())}))
        thread = threading.Thread(target=ask)
        thread.start()
        await running["2-0"].task  # type: ignore[misc]
        thread.join()
        gate.set_result(None)
        await running["1-0"].task  # type: ignore[misc]

    run_async(main)
    assert answer == ["2-0"]
