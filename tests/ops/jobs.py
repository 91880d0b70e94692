"""The two-host test's job: counts its starts and completions per host in the shared Redis."""

from __future__ import annotations

import asyncio
import os

from cluster.queues import current_job, job


@job(priority="high")
async def tally(token: str, seconds: float) -> None:
    ctx = current_job()
    host = os.environ.get("OPS_HOST", "?")
    # one transaction: a kill -9 cannot fall between the two records
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.hincrby("ops:starts", token, 1).sadd(f"ops:started:{host}", token)
        await pipe.execute()
    await asyncio.sleep(seconds)
    await ctx.redis.hincrby(f"ops:done:{host}", token, 1)
