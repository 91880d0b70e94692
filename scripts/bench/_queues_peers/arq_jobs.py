"""arq's no-op job and worker settings (max_jobs and poll delay as in the anchors' tuned row)."""

import asyncio
import os
from typing import Any

from arq.connections import RedisSettings

from _queues_peers import IO_S

COUNTER = "bench:count"


async def noop(ctx: dict[str, Any]) -> None:
    if IO_S:
        await asyncio.sleep(IO_S)
    await ctx["redis"].incr(COUNTER)


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
    max_jobs = 100
    poll_delay = 0.05
    keep_result = 60
