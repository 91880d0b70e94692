"""The tick arithmetic of periodic jobs: which tick of a cron schedule is due, given the last one recorded.

Pure functions of (schedule, last recorded tick, now), in UTC epoch seconds, with no clock of their own:
the scheduler loop (``cluster.queues.scheduler``) reads the time and Redis, these decide.

A schedule is a cron expression of 5 fields (minute hour day month weekday) or 6, the sixth being
seconds (croniter's order: ``* * * * * *`` fires every second). Ticks fall on whole seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from croniter import croniter

#: Prefix of a periodic job's id: ``periodic:<job name>:<tick epoch s>``, the same id for one tick
#: whichever scheduler enqueues it, so the enqueue's dedup by id adds it once.
ID_PREFIX = "periodic:"


def check_cron(expression: str) -> str:
    """``expression`` if it is a 5- or 6-field cron expression croniter accepts; ValueError otherwise."""
    if not isinstance(expression, str) or len(expression.split()) not in (5, 6) or not croniter.is_valid(expression):
        raise ValueError(f"cron must be a cron expression of 5 fields (or 6, the sixth for seconds), "
                         f"got {expression!r}")
    return expression


def latest_tick(cron: str, now: float) -> float:
    """The latest tick at or before ``now``."""
    # Ticks are whole seconds: the latest one strictly before floor(now) + 1 is at or before now.
    return float(croniter(cron, math.floor(now) + 1).get_prev(float))


def next_tick(cron: str, now: float) -> float:
    """The first tick strictly after ``now``."""
    return float(croniter(cron, now).get_next(float))


@dataclass(frozen=True)
class Due:
    """What a scheduler does now for one schedule."""

    tick: float | None
    """The tick to enqueue (the latest one since the last recorded), None when none is due."""
    skipped: bool = False
    """Earlier ticks since the last recorded one were passed over (the schedulers were down)."""


def due_tick(cron: str, last: float | None, now: float) -> Due:
    """The tick to enqueue given the ``last`` one recorded (None: none ever was).

    Only the latest tick at or before ``now`` is ever due: ticks missed while no scheduler ran are
    not replayed, the latest of them runs once (``skipped`` says some were passed over). With no
    tick recorded (a schedule seen for the first time) nothing is due: the caller records the
    latest tick as the starting point, so a new daily job does not fire at once on its first start.
    """
    tick = latest_tick(cron, now)
    if last is None or tick <= last:
        return Due(None)
    return Due(tick, skipped=next_tick(cron, last) < tick)


def job_id(name: str, tick: float) -> str:
    """The id of ``name``'s job for ``tick``: the same in every scheduler."""
    return f"{ID_PREFIX}{name}:{int(tick)}"


def tick_of(job_id: str) -> float | None:
    """The tick (epoch s) a periodic job's id names; None for any other id (call with ``current_job().id``)."""
    if not job_id.startswith(ID_PREFIX):
        return None
    _, _, tail = job_id.rpartition(":")
    return float(tail) if tail.isdigit() else None
