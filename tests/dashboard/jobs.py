"""Jobs of the dashboard tests: one that fails while its key says so, one that records it ran."""

from __future__ import annotations

from cluster.queues import current_job, job


@job(priority="high", retries=0)
async def fragile(key: str) -> str:
    """Fails (straight to the dead letter set) while ``<key>:broken`` exists; records its id once it runs."""
    ctx = current_job()
    if await ctx.redis.exists(f"{key}:broken"):
        raise RuntimeError("broken on purpose")
    await ctx.redis.rpush(key, ctx.id)
    return "ok"


@job(priority="medium")
async def note(key: str, value: str) -> str:
    ctx = current_job()
    await ctx.redis.rpush(key, value)
    return value
