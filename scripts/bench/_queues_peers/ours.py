"""Our no-op job."""

from queues import current_job, job

COUNTER = "bench:count"


@job(name="bench.noop")
async def noop() -> None:
    await current_job().redis.incr(COUNTER)
