"""The jobs module of the periodic scheduler's process tests: one job every second, on a queue their pools
(of another priority) do not consume, so each tick's enqueue stays visible in its stream."""

from __future__ import annotations

from cluster.queues import job

NAME = "periodic-every-second"
PRIORITY = "background"


@job(NAME, priority=PRIORITY, cron="* * * * * *")
async def every_second() -> None:
    """Never run in the tests: its ticks are counted in the queue's stream."""
