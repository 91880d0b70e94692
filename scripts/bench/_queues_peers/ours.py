"""Our no-op job."""

import asyncio

from _queues_peers import IO_S
from cluster.queues import current_job, job

COUNTER = "bench:count"


@job(name="bench.noop")
async def noop() -> None:
    if IO_S:
        await asyncio.sleep(IO_S)
    await current_job().redis.incr(COUNTER)
