"""Batch enqueue against a real redis-server: one round trip, each job with enqueue's guarantees."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from config import Settings
from queues.client import Enqueued, JobRequest, QueueClient, QueueFull, SyncQueueClient
from queues.keys import QueueKeys
from queues.registry import UnknownJob
from tests.queues.helpers import consume_until

pytestmark = pytest.mark.integration


def test_a_batch_gives_each_job_its_own_outcome(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(high={"max_size": 3})

    async def main() -> None:
        client = QueueClient(settings)
        await client.enqueue("tests.queues.jobs.mark", "seen", "first", priority="high", job_id="dup-1")
        outcomes = await client.enqueue_many([
            JobRequest("tests.queues.jobs.mark", ("seen", "a"), priority="high"),
            JobRequest("tests.queues.jobs.mark", ("seen", "again"), priority="high", job_id="dup-1"),
            JobRequest("no.such.job"),
            JobRequest("tests.queues.jobs.mark", ("seen", "b"), priority="high", delay=-1),
            JobRequest("tests.queues.jobs.mark", ("seen", "c"), priority="high"),
            JobRequest("tests.queues.jobs.mark", ("seen", "d"), priority="high"),
        ])
        assert isinstance(outcomes[0], Enqueued) and outcomes[0].created
        assert isinstance(outcomes[1], Enqueued) and not outcomes[1].created and outcomes[1].id == "dup-1"
        assert isinstance(outcomes[2], UnknownJob)
        assert isinstance(outcomes[3], ValueError)
        assert isinstance(outcomes[4], Enqueued) and outcomes[4].created
        assert isinstance(outcomes[5], QueueFull), "the bound holds per job inside a batch"
        assert await client.redis.xlen(QueueKeys("high").stream) == 3

        async def all_ran(c: QueueClient) -> list[str] | None:
            seen = await c.redis.lrange("seen", 0, -1)
            return seen if len(seen) == 3 else None

        seen = await consume_until(settings, ["high"], all_ran)
        assert sorted(seen) == ["a", "c", "first"]
        await client.close()

    asyncio.run(main())


def test_the_sync_batch_enqueues_every_job_once(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    client = SyncQueueClient(settings)
    jobs = [JobRequest("tests.queues.jobs.add", (i, i), job_id=f"batch-{i}") for i in range(50)]
    first = client.enqueue_many(jobs)
    again = client.enqueue_many(jobs)
    assert all(isinstance(o, Enqueued) and o.created for o in first)
    assert all(isinstance(o, Enqueued) and not o.created for o in again), "ids deduplicate across batches"
    assert client.redis.xlen(QueueKeys("medium").stream) == 50
    client.close()
