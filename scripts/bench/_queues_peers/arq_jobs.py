"""arq's no-op job and worker settings (max_jobs and poll delay as in the anchors' tuned row)."""

import os
from typing import Any

from arq.connections import RedisSettings

COUNTER = "bench:count"


async def noop(ctx: dict[str, Any]) -> None:
    await ctx["redis"].incr(COUNTER)


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
    max_jobs = 100
    poll_delay = 0.05
    keep_result = 60
