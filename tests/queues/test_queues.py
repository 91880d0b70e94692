"""The queues against a real redis-server: consumers run in the test's event loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
import redis.asyncio

from cluster.config import Settings
from cluster.queues.client import QueueClient, QueueFull, SyncQueueClient
from cluster.queues.keys import QueueKeys
from cluster.queues.registry import UnknownJob
from tests.queues.helpers import consume_until
from tests.support import run_async

pytestmark = pytest.mark.integration


def test_sync_and_async_handlers_run_and_store_results(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        a = await client.enqueue("tests.queues.jobs.add", 2, 3)
        b = SyncQueueClient(settings).enqueue("tests.queues.jobs.sync_add", a=4, b=5)

        async def both_done(c: QueueClient) -> bool:
            jobs = [await c.get_job(a.id), await c.get_job(b.id)]
            return all(j and j["state"] == "done" for j in jobs)

        await consume_until(settings, ["medium"], both_done)
        assert (await client.get_job(a.id))["result"] == 5
        assert (await client.get_job(b.id))["result"] == 9
        status = await client.queue_status("medium")
        assert status["processed"] == 2 and status["depth"] == 0 and status["in_flight"] == 0
        assert await client.redis.xlen(QueueKeys("medium").stream) == 0, "acknowledged entries are deleted"
        await client.close()

    run_async(main)


def test_priority_isolation_high_jobs_pass_a_background_flood(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(background={"concurrency": 1})
    flood = 200

    async def main() -> None:
        client = QueueClient(settings)
        for i in range(flood):
            await client.enqueue("tests.queues.jobs.slow_mark", "order", f"bg{i}", 0.02)
        for i in range(10):
            await client.enqueue("tests.queues.jobs.mark", "order", f"hi{i}")

        async def all_high_done(c: QueueClient) -> list[str] | None:
            order = await c.redis.lrange("order", 0, -1)
            return order if sum(1 for v in order if v.startswith("hi")) == 10 else None

        order = await consume_until(settings, ["high", "background"], all_high_done)
        background_done = sum(1 for v in order if v.startswith("bg"))
        assert background_done < flood / 2, f"high jobs waited behind {background_done} background jobs"
        assert sorted(v for v in order if v.startswith("hi")) == sorted(f"hi{i}" for i in range(10))
        await client.close()

    run_async(main)


def test_timeout_then_retries_then_dead_letter(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(medium={"timeout": 0.3})

    async def main() -> None:
        client = QueueClient(settings)
        queued = await client.enqueue("tests.queues.jobs.sleepy", "attempts", 5.0)

        async def dead(c: QueueClient) -> bool:
            job = await c.get_job(queued.id)
            return bool(job and job["state"] == "dead")

        await consume_until(settings, ["medium"], dead)
        job = await client.get_job(queued.id)
        assert job["attempts"] == 3 and "timed out" in job["error"]
        assert len(await client.redis.lrange("attempts", 0, -1)) == 3
        [entry] = await client.dead_entries("medium")
        assert entry["job_id"] == queued.id and entry["reason"] == "timeout" and entry["attempts"] == "3"
        status = await client.queue_status("medium")
        assert (status["failed"], status["retried"], status["dead"]) == (3, 2, 1)
        await client.close()

    run_async(main)


def test_backoff_grows_between_attempts_and_job_then_succeeds(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(backoff_base=0.2, backoff_max=10.0)

    async def main() -> None:
        client = QueueClient(settings)
        queued = await client.enqueue("tests.queues.jobs.flaky", "starts", 3)

        async def done(c: QueueClient) -> bool:
            job = await c.get_job(queued.id)
            return bool(job and job["state"] == "done")

        await consume_until(settings, ["medium"], done)
        starts = [float(v.split(":")[1]) for v in await client.redis.lrange("starts", 0, -1)]
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert len(gaps) == 3
        # waits are at least 0.2, 0.4, 0.8 s by the formula: each gap is longer than the one before
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8
        assert (await client.get_job(queued.id))["result"] == 4
        await client.close()

    run_async(main)


def test_full_queue_rejects_and_loses_nothing(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(high={"max_size": 5})

    async def main() -> None:
        client = QueueClient(settings)
        ids = [(await client.enqueue("tests.queues.jobs.mark", "full", str(i))).id for i in range(5)]
        with pytest.raises(QueueFull):
            await client.enqueue("tests.queues.jobs.mark", "full", "rejected")
        assert (await client.queue_status("high"))["depth"] == 5

        async def all_done(c: QueueClient) -> bool:
            return await c.redis.llen("full") == 5

        await consume_until(settings, ["high"], all_done)
        assert sorted(await client.redis.lrange("full", 0, -1)) == [str(i) for i in range(5)]
        assert [(await client.get_job(i))["state"] for i in ids] == ["done"] * 5
        assert (await client.enqueue("tests.queues.jobs.mark", "full", "after")).created
        await client.close()

    run_async(main)


def test_malformed_entries_go_to_dead_letter_and_the_consumer_survives(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        await client.ensure_group("high")
        stream = QueueKeys("high").stream
        await client.redis.xadd(stream, {"job": "{not json"})
        await client.redis.xadd(stream, {"something": "else"})
        await client.redis.xadd(stream, {"job": json.dumps({"id": "x1", "name": "no.such.job", "priority": "high",
                                                            "args": [], "kwargs": {}, "attempt": 1,
                                                            "max_retries": 3, "enqueued_at": 0, "not_before": 0})})
        good = await client.enqueue("tests.queues.jobs.mark", "survivor", "ok")

        async def good_done(c: QueueClient) -> bool:
            job = await c.get_job(good.id)
            return bool(job and job["state"] == "done")

        await consume_until(settings, ["high"], good_done)
        reasons = sorted(e["reason"] for e in await client.dead_entries("high"))
        assert reasons == ["undecodable", "undecodable", "unknown job"]
        assert await client.redis.xlen(stream) == 0
        await client.close()

    run_async(main)


def test_delayed_jobs_run_after_their_time_and_not_before(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        before = time.time()
        queued = await client.enqueue("tests.queues.jobs.mark", "delayed", "late", delay=1.5)
        assert queued.state == "delayed"
        now_job = await client.enqueue("tests.queues.jobs.mark", "delayed", "now")

        async def now_done(c: QueueClient) -> bool:
            job = await c.get_job(now_job.id)
            return bool(job and job["state"] == "done")

        await consume_until(settings, ["high"], now_done)
        if time.time() - before < 1.4:
            assert (await client.get_job(queued.id))["state"] == "delayed"

        async def late_done(c: QueueClient) -> dict | None:
            job = await c.get_job(queued.id)
            return job if job and job["state"] == "done" else None

        job = await consume_until(settings, ["high"], late_done)
        assert job["finished_at"] >= before + 1.5
        await client.close()

    run_async(main)


def test_idempotent_enqueue_and_unknown_names(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        first = await client.enqueue("tests.queues.jobs.add", 1, 1, job_id="once")
        second = await client.enqueue("tests.queues.jobs.add", 1, 1, job_id="once")
        assert first.created and not second.created and second.id == "once"
        assert await client.redis.xlen(QueueKeys("medium").stream) == 1
        with pytest.raises(UnknownJob):
            await client.enqueue("no.such.job")
        with pytest.raises(ValueError):
            await client.enqueue("tests.queues.jobs.add", object(), 1)
        await client.close()

    run_async(main)


def test_results_expire(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(result_ttl=2.0)

    async def main() -> None:
        client = QueueClient(settings)
        queued = await client.enqueue("tests.queues.jobs.add", 1, 2)

        async def done(c: QueueClient) -> bool:
            job = await c.get_job(queued.id)
            return bool(job and job["state"] == "done")

        await consume_until(settings, ["medium"], done)
        assert await client.redis.ttl(QueueKeys("medium").job(queued.id)) <= 2

        async def gone(c: QueueClient) -> bool:
            return await c.get_job(queued.id) is None

        await consume_until(settings, [], gone, timeout=30)
        await client.close()

    run_async(main)


def test_a_result_that_is_not_json_fails_the_job_at_once_and_an_empty_priority_is_refused(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        with pytest.raises(ValueError, match="priority"):
            await client.enqueue("tests.queues.jobs.add", 1, 2, priority="")
        queued = await client.enqueue("tests.queues.jobs.returns_no_json", "no-json")

        async def failed(c: QueueClient) -> dict | None:
            job = await c.get_job(queued.id)
            return job if job and job["state"] == "failed" else None

        job = await consume_until(settings, ["medium"], failed)
        assert job["error"].startswith("result is not JSON") and job["attempts"] == 1
        assert await client.redis.llen("no-json") == 1, "the handler is not run again"
        assert await client.redis.zcard(QueueKeys("medium").delayed) == 0 and await client.dead_entries() == []
        await client.close()

    run_async(main)


def test_single_enqueues_in_a_crowd_and_after_their_connections_are_killed(
        make_settings: Callable[..., Settings]) -> None:
    """One enqueue at a time goes over a held connection, the ones that find it busy through the pool:
    a crowd of them all land, and after every connection of the client is killed the next ones reconnect
    (the asyncio clients retry: they once had the sync Retry, which retried nothing)."""
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        admin = redis.asyncio.Redis.from_url(settings.redis.url or "")
        try:
            sequential = [await client.enqueue("tests.queues.jobs.add", i, 1) for i in range(5)]
            crowd = await asyncio.gather(*(client.enqueue("tests.queues.jobs.add", i, 2) for i in range(50)))
            assert all(job.created for job in [*sequential, *crowd])
            assert len({job.id for job in [*sequential, *crowd]}) == 55
            assert await client.redis.xlen(QueueKeys("medium").stream) == 55

            killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            assert killed >= 2, "the held connection and the pool's"
            after = [await client.enqueue("tests.queues.jobs.add", i, 3) for i in range(3)]
            after += await asyncio.gather(*(client.enqueue("tests.queues.jobs.add", i, 4) for i in range(10)))
            assert all(job.created for job in after)
            assert await client.redis.xlen(QueueKeys("medium").stream) == 68
        finally:
            await admin.aclose()
            await client.close()

    run_async(main)


def test_a_long_job_is_marked_running_with_its_consumer_and_start(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        before = time.time()
        job = await client.enqueue("tests.queues.jobs.sleepy", "sleepy-runs", 30.0)

        async def marked(c: QueueClient) -> dict | None:
            view = await c.get_job(job.id)
            return view if view and view["state"] == "running" else None

        view = await consume_until(settings, ["medium"], marked)
        assert view["consumer"] == "test-medium"
        started = float((await client.redis.lrange("sleepy-runs", 0, 0))[0].split(":")[1])
        assert before <= view["started_at"] <= started, "the start is when the consumer took the job"
        await client.close()

    run_async(main)
