"""Jobs the queue tests run (also the jobs module of the integration test's cluster)."""

from __future__ import annotations

import asyncio
import logging
import time

import redis

from cluster.queues import current_job, job

log = logging.getLogger("tests.queues.jobs")


def _record(key: str, value: str) -> None:
    """Append to a Redis list on the job's own Redis (sync, so it works from threads too)."""
    ctx = current_job()
    client = redis.Redis.from_url(ctx.settings.redis.url or "", decode_responses=True)
    try:
        client.rpush(key, value)
        client.expire(key, 600)
    finally:
        client.close()


@job(priority="high")
async def mark(key: str, value: str) -> str:
    ctx = current_job()
    await ctx.redis.rpush(key, value)
    await ctx.redis.expire(key, 600)
    log.info("marked %s", value, extra={"job_id": ctx.id})
    return value


@job(priority="background")
async def slow_mark(key: str, value: str, seconds: float) -> None:
    await asyncio.sleep(seconds)
    ctx = current_job()
    await ctx.redis.rpush(key, value)


@job(priority="medium")
async def add(a: int, b: int) -> int:
    return a + b


@job(priority="medium")
def sync_add(a: int, b: int) -> int:
    return a + b


@job(priority="medium", retries=2)
async def sleepy(key: str, seconds: float) -> None:
    """Records each attempt, then sleeps (past its timeout in the timeout tests)."""
    ctx = current_job()
    await ctx.redis.rpush(key, f"{ctx.attempt}:{time.time()}")
    await asyncio.sleep(seconds)


@job(priority="medium", retries=1)
def stuck(key: str) -> None:
    """A sync handler that ignores the soft timeout (blocked in C), so its process must be killed."""
    _record(key, f"{current_job().attempt}")
    if current_job().attempt == 1:
        time.sleep(3600)


@job(priority="medium", retries=3)
async def flaky(key: str, failures: int) -> int:
    """Fails ``failures`` times, then succeeds; records each attempt's start time."""
    ctx = current_job()
    await ctx.redis.rpush(key, f"{ctx.attempt}:{time.time()}")
    if ctx.attempt <= failures:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt


@job(priority="low", retries=3)
async def crash_once(key: str, pid_key: str) -> str:
    """First run: publish our pid and hang, so the test can kill -9 this consumer mid-job.

    Each run appends its attempt number to ``key`` (a rerun after a crash is the same attempt).
    """
    ctx = current_job()
    runs = await ctx.redis.rpush(key, str(ctx.attempt))
    if runs == 1:
        import os

        await ctx.redis.set(pid_key, os.getpid())
        await asyncio.sleep(3600)
    return "survived"


@job(priority="high")
def incr(key: str) -> None:
    _record(key, "1")


@job(priority="medium", retries=0)
async def always_fails() -> None:
    raise ValueError("this job always fails")


async def _note(key: str) -> int:
    """Append ``<job id>:<attempt>:<time>:<pid>`` to ``key``; returns how many runs it holds now."""
    import os

    ctx = current_job()
    runs = await ctx.redis.rpush(key, f"{ctx.id}:{ctx.attempt}:{time.time()}:{os.getpid()}")
    await ctx.redis.expire(key, 600)
    return int(runs)


@job(priority="medium", retries=3, timeout=30)
async def count_run(key: str, seconds: float) -> None:
    """Records each run, then sleeps: a job in flight next to the one under test (its own 30 s timeout)."""
    await _note(key)
    await asyncio.sleep(seconds)


@job(priority="medium", retries=3)
async def hang_first(key: str) -> str:
    """The first run records itself (with its pid, for a kill -9) and hangs; the next one returns."""
    if await _note(key) == 1:
        await asyncio.sleep(3600)
    return "survived"


@job(priority="medium", retries=3, timeout=0.5)
async def ignores_cancellation(key: str) -> None:
    """Swallows every cancellation: only the watchdog ends it."""
    await _note(key)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


@job(priority="medium", retries=3, timeout=0.5)
async def blocks_the_loop(key: str) -> None:
    """A blocking call in an async handler: the whole event loop stops with it."""
    await _note(key)
    time.sleep(30)


@job(priority="medium", retries=3)
async def returns_no_json(key: str) -> object:
    await _note(key)
    return object()
