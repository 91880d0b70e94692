"""A paused queue on a real redis-server: what a blocked read brings in is held, kept past the lease, run once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from cluster.config import Settings
from cluster.queues.client import QueueClient
from cluster.queues.consumer import Consumer
from cluster.queues.keys import GROUP, QueueKeys
from tests.support import run_async

pytestmark = pytest.mark.integration


async def _blocked_reader(client: QueueClient) -> bool:
    """Whether some connection waits in a blocking XREADGROUP."""
    return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in await client.redis.client_list())


async def _wait(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():  # type: ignore[misc]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


KEYS = QueueKeys("high")


async def _pending(client: QueueClient) -> int:
    return int((await client.redis.xpending(KEYS.stream, GROUP))["pending"])


async def _hold_one(settings: Settings, client: QueueClient, key: str, value: str) -> tuple[Consumer, Any, Any]:
    """Start a consumer, pause the queue while its read blocks, enqueue one job: (consumer, its task, the job)."""
    await client.ensure_group("high")
    consumer = Consumer(settings, "high", client, name="test-high")
    task = asyncio.create_task(consumer.run())
    await _wait(lambda: _blocked_reader(client), "the consumer's blocking read")
    await client.redis.set(KEYS.paused, "1")
    job = await client.enqueue("tests.queues.jobs.mark", key, value)
    await _wait(lambda: _pending(client), "the read to deliver the entry")
    return consumer, task, job


def test_an_entry_read_as_the_queue_is_paused_is_held_past_the_lease_and_runs_once_on_resume(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        consumer, task, job = await _hold_one(settings, client, "paused:runs", "once")
        try:
            await asyncio.sleep(3 * consumer.lease)  # the reaper runs every lease / 4: it must leave it alone
            assert await client.redis.lrange("paused:runs", 0, -1) == []
            assert await _pending(client) == 1
            assert (await client.get_job(job.id) or {}).get("state") == "queued"

            await client.redis.delete(KEYS.paused)

            async def done() -> bool:
                return (await client.get_job(job.id) or {}).get("state") == "done"

            await _wait(done, "the job to run after the resume")
            await asyncio.sleep(2 * consumer.lease)
            assert await client.redis.lrange("paused:runs", 0, -1) == ["once"]
            assert await _pending(client) == 0
        finally:
            consumer.stop()
            await task
            await client.close()

    run_async(main)


def test_a_consumer_stopped_while_holding_for_a_pause_puts_the_entry_back_without_a_crash(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        consumer, task, job = await _hold_one(settings, client, "paused:stop", "x")
        consumer.stop()
        await task
        assert await _pending(client) == 0
        assert await client.redis.xlen(KEYS.stream) == 1  # back on the queue, waiting for the resume
        assert await client.redis.hmget(KEYS.job(job.id), "state", "crashes") == ["queued", "0"]
        assert await client.redis.lrange("paused:stop", 0, -1) == []
        await client.close()

    run_async(main)
