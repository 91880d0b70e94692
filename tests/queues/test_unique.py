"""Unique jobs on a real redis-server: one job per key while queued or running, a new one once it ended
(done or dead) or its lock's TTL passed, and one winner among concurrent enqueues."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cluster.config import Settings
from cluster.queues import current_job, job
from cluster.queues.client import QueueClient
from cluster.queues.keys import QueueKeys
from cluster.queues.unique import enqueue_unique
from tests.queues.helpers import consume_until
from tests.support import run_async

pytestmark = pytest.mark.integration


@job("unique-test.record", priority="low", unique_for=60)
async def record(key: str) -> None:
    await current_job().redis.rpush(key, current_job().id)


@job("unique-test.record-sync", priority="low", unique_for=60)
def record_sync(key: str) -> None:
    """A sync handler: its lock is freed from its thread."""


@job("unique-test.fails", priority="low", unique_for=60, retries=1)
async def fails(key: str) -> None:
    raise RuntimeError("this unique job always fails")


@job("unique-test.plain", priority="low")
async def plain() -> None:
    """Not unique: enqueue_unique needs unique_for for it."""


def _run(settings: Settings, test: Callable[[QueueClient], Any]) -> Any:
    async def main() -> Any:
        client = QueueClient(settings)
        try:
            return await test(client)
        finally:
            await client.close()

    return run_async(main)


def _state(job_id: str, *states: str) -> Callable[[QueueClient], Any]:
    async def check(client: QueueClient) -> bool:
        found = await client.get_job(job_id)
        return bool(found and found["state"] in states)

    return check


def _lock_gone(job_id: str) -> Callable[[QueueClient], Any]:
    async def check(client: QueueClient) -> bool:
        return not await client.redis.exists(QueueKeys("low").unique_owner(job_id))

    return check


@pytest.mark.parametrize("name", ["unique-test.record", "unique-test.record-sync"])
def test_one_job_while_queued_and_a_new_one_once_it_is_done(make_settings: Callable[..., Settings],
                                                             name: str) -> None:
    settings = make_settings()

    async def test(client: QueueClient) -> None:
        first = await enqueue_unique(client, name, f"k-{name}")
        again = await enqueue_unique(client, name, f"k-{name}")
        other = await enqueue_unique(client, name, f"other-{name}")  # other arguments: another key
        assert first.created and not again.created and other.created
        assert again.id == first.id and again.state == "queued" and other.id != first.id
        await consume_until(settings, ["low"], _state(first.id, "done"))
        await consume_until(settings, ["low"], _lock_gone(first.id))  # freed by the job, before its ack
        after = await enqueue_unique(client, name, f"k-{name}")
        assert after.created and after.id != first.id

    _run(settings, test)


def test_a_dead_job_frees_its_key_and_a_retried_one_keeps_it(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(backoff_base=0.5, backoff_max=1.0)

    async def test(client: QueueClient) -> None:
        first = await enqueue_unique(client, "unique-test.fails", "dead")
        await consume_until(settings, ["low"], _state(first.id, "retrying"))
        during_retry = await enqueue_unique(client, "unique-test.fails", "dead")
        assert during_retry.id == first.id and not during_retry.created
        await consume_until(settings, ["low"], _state(first.id, "dead"))
        after = await enqueue_unique(client, "unique-test.fails", "dead")
        assert after.created and after.id != first.id

    _run(settings, test)


def test_the_ttl_frees_the_key_of_a_job_still_queued(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def test(client: QueueClient) -> None:
        first = await enqueue_unique(client, "unique-test.record", "ttl", unique_for=0.2, unique_key="ttl-key")
        lock = QueueKeys("low").unique("ttl-key")
        assert await client.redis.get(lock) == first.id
        while await client.redis.exists(lock):  # the TTL, not the job (no consumer runs it), frees it
            await asyncio.sleep(0.05)
        assert (await client.get_job(first.id))["state"] == "queued"
        second = await enqueue_unique(client, "unique-test.record", "ttl", unique_for=60, unique_key="ttl-key")
        assert second.created and second.id != first.id

    _run(settings, test)


def test_concurrent_enqueues_make_one_job(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def test(client: QueueClient) -> None:
        clients = [QueueClient(settings) for _ in range(5)]  # several connections, so the calls interleave
        try:
            outcomes = await asyncio.gather(*(enqueue_unique(clients[i % 5], "unique-test.record", "race")
                                              for i in range(50)))
        finally:
            for extra in clients:
                await extra.close()
        assert sum(o.created for o in outcomes) == 1
        assert len({o.id for o in outcomes}) == 1

    _run(settings, test)


def test_a_refused_enqueue_frees_the_key(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_payload_bytes=100)

    async def test(client: QueueClient) -> None:
        with pytest.raises(ValueError):
            await enqueue_unique(client, "unique-test.record", "x" * 200, unique_key="refused")
        assert not await client.redis.exists(QueueKeys("low").unique("refused"))
        ok = await enqueue_unique(client, "unique-test.record", "small", unique_key="refused")
        assert ok.created

    _run(settings, test)


def test_unique_needs_a_ttl(make_settings: Callable[..., Settings]) -> None:
    async def test(client: QueueClient) -> None:
        with pytest.raises(ValueError, match="not unique"):
            await enqueue_unique(client, "unique-test.plain")
        with pytest.raises(ValueError, match="unique_for must be"):
            await enqueue_unique(client, "unique-test.plain", unique_for=0)

    _run(make_settings(), test)
    with pytest.raises(ValueError, match="unique_for must be"):
        job("unique-test.never", unique_for=-1)


def test_the_public_enqueue_honours_a_unique_job_and_enqueue_sync_refuses_it(
        make_settings: Callable[..., Settings]) -> None:
    """`cluster.enqueue` takes the unique path for a job registered with unique_for; a job_id given
    by the caller is its own dedup and bypasses it."""
    from cluster import enqueue, enqueue_sync
    from cluster.queues import api

    settings = make_settings()

    async def test(client: QueueClient) -> None:
        api.configure(settings, client)
        first = await enqueue("unique-test.record", "public")
        again = await enqueue("unique-test.record", "public")
        assert first.created and not again.created and again.id == first.id
        named = await enqueue("unique-test.record", "public", job_id="caller-chose-this-id")
        assert named.created and named.id == "caller-chose-this-id"

    try:
        _run(settings, test)
        with pytest.raises(ValueError, match="unique"):
            enqueue_sync("unique-test.record", "public")
    finally:
        api.configure(settings, None)
