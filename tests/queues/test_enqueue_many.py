"""Batch enqueue against a real redis-server: one round trip, each job with enqueue's guarantees (also over HTTP)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from cluster.config import Settings
from cluster.queues.client import QueueClient, SyncQueueClient
from cluster.queues.enqueue_plan import ENQUEUE_CHUNK, Enqueued, EnqueueUnknown, JobRequest, QueueFull
from cluster.queues.keys import QueueKeys
from cluster.queues.registry import UnknownJob
from tests.queues.helpers import consume_until
from cluster.workers.app import build_app
from cluster.workers.queues_api import CLIENT, MAX_BATCH_JOBS
from tests.support import run_async

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

    run_async(main)


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


def _with(settings: Settings, section: str, **values: Any) -> Settings:
    """``settings`` with some keys of one section changed."""
    data = settings.model_dump()
    data[section] = {**data[section], **values}
    return Settings.model_validate(data)


def _evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_duplicates_inside_a_batch_and_against_existing_jobs(make_settings: Callable[..., Settings]) -> None:
    client = SyncQueueClient(make_settings())
    client.enqueue("tests.queues.jobs.add", 1, 1, job_id="old")
    outcomes = client.enqueue_many([
        JobRequest("tests.queues.jobs.add", (1, 2), job_id="twice"),
        JobRequest("tests.queues.jobs.add", (3, 4), job_id="twice"),
        JobRequest("tests.queues.jobs.add", (5, 6), job_id="old"),
        JobRequest("tests.queues.jobs.add", (7, 8), job_id="bad id!"),
    ])
    first, second, old, bad = outcomes
    assert isinstance(first, Enqueued) and first.created and first.state == "queued"
    assert isinstance(second, Enqueued) and not second.created and second.state == "queued" and second.id == "twice"
    assert isinstance(old, Enqueued) and not old.created and old.id == "old"
    assert isinstance(bad, ValueError) and "job_id" in str(bad)
    assert client.redis.xlen(QueueKeys("medium").stream) == 2, "one entry for 'old', one for the first 'twice'"
    stored = json.loads(client.redis.hget(QueueKeys("medium").job("twice"), "envelope"))
    assert stored["args"] == [1, 2], "the first copy of a repeated id is the one kept"
    assert client.redis.hget(QueueKeys("medium").stats, "enqueued") == "2"
    client.close()


def test_a_batch_across_max_size_takes_exactly_the_room_left(make_settings: Callable[..., Settings]) -> None:
    client = SyncQueueClient(make_settings(low={"max_size": 5}))
    for i in range(3):
        client.enqueue("tests.queues.jobs.add", i, i, priority="low")
    jobs = [JobRequest("tests.queues.jobs.add", (i, i), priority="low") for i in range(6)]
    jobs.insert(1, JobRequest("tests.queues.jobs.add", (9, 9), priority="low", delay=3600))  # the delayed set has room
    outcomes = client.enqueue_many(jobs)
    assert [type(o).__name__ for o in outcomes] == ["Enqueued", "Enqueued", "Enqueued"] + ["QueueFull"] * 4
    assert outcomes[1].state == "delayed"  # type: ignore[union-attr]
    full = outcomes[3]
    assert isinstance(full, QueueFull) and full.priority == "low" and full.max_size == 5 and "ready" in str(full)
    assert client.redis.xlen(QueueKeys("low").stream) == 5
    rejected = [o for o in outcomes if isinstance(o, QueueFull)]
    assert len(rejected) == 4
    client.close()


def test_delayed_jobs_of_a_batch_wait_in_the_delayed_set(make_settings: Callable[..., Settings]) -> None:
    client = SyncQueueClient(make_settings(medium={"max_size": 2}))
    before = time.time()
    outcomes = client.enqueue_many([
        JobRequest("tests.queues.jobs.add", (1, 1), delay=600, job_id="later-1"),
        JobRequest("tests.queues.jobs.add", (1, 1), at=before + 1200, job_id="later-2"),
        JobRequest("tests.queues.jobs.add", (1, 1), delay=600, job_id="later-3"),
        JobRequest("tests.queues.jobs.add", (1, 1), job_id="now"),
        JobRequest("tests.queues.jobs.add", (1, 1), delay=10, at=before + 10),
    ])
    assert [getattr(o, "state", None) for o in outcomes[:4]] == ["delayed", "delayed", None, "queued"]
    assert isinstance(outcomes[2], QueueFull) and "delayed" in str(outcomes[2]), "the delayed set has its own bound"
    assert isinstance(outcomes[4], ValueError) and "not both" in str(outcomes[4])
    keys = QueueKeys("medium")
    due = dict(client.redis.zrange(keys.delayed, 0, -1, withscores=True))
    assert set(due) == {"later-1", "later-2"}
    assert before + 599 <= due["later-1"] / 1000 <= time.time() + 601
    assert due["later-2"] == pytest.approx((before + 1200) * 1000, abs=1)
    assert client.redis.ttl(keys.job("later-2")) > client.redis.ttl(keys.job("now")), "a later job's hash lives longer"
    assert client.redis.xlen(keys.stream) == 1
    client.close()


def test_a_batch_of_mixed_queues_is_one_script_call_per_queue(make_settings: Callable[..., Settings]) -> None:
    client = SyncQueueClient(make_settings())
    client.enqueue_many([JobRequest("tests.queues.jobs.add", (0, 0))])  # the script is loaded
    client.redis.config_resetstat()
    names = ["tests.queues.jobs.mark", "tests.queues.jobs.add", "no.such.job", "tests.queues.jobs.slow_mark"]
    jobs = [JobRequest(names[i % 4], ("k", str(i)) if i % 4 == 0 else (i, i) if i % 4 == 1 else ("k", str(i), 0.0))
            for i in range(40)]
    jobs.append(JobRequest("tests.queues.jobs.add", (1, 1), priority="low"))
    outcomes = client.enqueue_many(jobs)
    assert _evalsha_calls(client.redis) == 4, "high, medium, background and low: one call each"
    expected = {0: "high", 1: "medium", 3: "background"}
    for i, outcome in enumerate(outcomes[:40]):
        if i % 4 == 2:
            assert isinstance(outcome, UnknownJob)
        else:
            assert isinstance(outcome, Enqueued) and outcome.created and outcome.priority == expected[i % 4], outcome
    assert isinstance(outcomes[40], Enqueued) and outcomes[40].priority == "low"
    lengths = {p: client.redis.xlen(QueueKeys(p).stream) for p in ("high", "medium", "low", "background")}
    assert lengths == {"high": 10, "medium": 11, "low": 1, "background": 10}
    client.close()


def test_a_large_batch_goes_in_chunks_in_one_round_trip(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(medium={"max_size": 10_000})
    count = 2 * ENQUEUE_CHUNK + 500

    async def main() -> None:
        client = QueueClient(settings)
        await client.enqueue("tests.queues.jobs.add", 0, 0)  # the script is loaded
        await client.redis.config_resetstat()
        jobs = [JobRequest("tests.queues.jobs.add", (i, i), job_id=f"big-{i}") for i in range(count)]
        jobs.append(JobRequest("tests.queues.jobs.add", (0, 0), job_id="big-10"))  # repeats one of the first chunk
        outcomes = await client.enqueue_many(jobs)
        stats = (await client.redis.info("commandstats"))["cmdstat_evalsha"]
        assert int(stats["calls"]) == 3, f"{count} jobs: 3 calls of at most {ENQUEUE_CHUNK}"
        assert all(isinstance(o, Enqueued) and o.created and o.id == f"big-{i}" for i, o in enumerate(outcomes[:count]))
        assert isinstance(outcomes[-1], Enqueued) and not outcomes[-1].created
        assert await client.redis.xlen(QueueKeys("medium").stream) == count + 1
        assert await client.redis.hget(QueueKeys("medium").stats, "enqueued") == str(count + 1)
        await client.close()

    run_async(main)


def test_a_flushed_script_is_loaded_again(make_settings: Callable[..., Settings]) -> None:
    client = SyncQueueClient(make_settings())
    client.enqueue("tests.queues.jobs.add", 0, 0)
    for _ in range(2):
        client.redis.script_flush()
        outcomes = client.enqueue_many([JobRequest("tests.queues.jobs.add", (1, 1)),
                                        JobRequest("tests.queues.jobs.add", (2, 2), priority="low")])
        assert all(isinstance(o, Enqueued) and o.created for o in outcomes)
    client.redis.script_flush()
    assert client.enqueue("tests.queues.jobs.add", 3, 3).created
    assert client.redis.xlen(QueueKeys("medium").stream) == 4

    async def single_async_enqueues() -> None:  # the async client's held connection, then NOSCRIPT on it
        aclient = QueueClient(client.settings)
        assert (await aclient.enqueue("tests.queues.jobs.add", 4, 4)).created
        client.redis.script_flush()
        assert (await aclient.enqueue("tests.queues.jobs.add", 5, 5)).created
        assert (await aclient.enqueue("tests.queues.jobs.add", 6, 6)).created
        client.redis.script_flush()
        # concurrent ones: all but one go on the shared pipelined connection, NOSCRIPT and all
        outcomes = await asyncio.gather(*(aclient.enqueue("tests.queues.jobs.add", i, i, job_id=f"c-{i % 40}")
                                          for i in range(60)))
        assert sorted(o.id for o in outcomes if o.created) == sorted(f"c-{i}" for i in range(40))
        assert all(o.state == "queued" for o in outcomes)
        await aclient.close()

    run_async(single_async_enqueues)
    assert client.redis.xlen(QueueKeys("medium").stream) == 47
    client.close()


def test_replicas_that_do_not_confirm_leave_each_job_unknown(make_settings: Callable[..., Settings]) -> None:
    settings = _with(make_settings(), "redis", wait_replicas=1, wait_timeout=0.05)  # the test Redis has no replica

    async def main() -> None:
        client = QueueClient(settings)
        outcomes = await client.enqueue_many([JobRequest("tests.queues.jobs.add", (1, 1), job_id="w-1"),
                                              JobRequest("no.such.job")])
        unknown = outcomes[0]
        assert isinstance(unknown, EnqueueUnknown) and unknown.job_id == "w-1" and "replicas" in str(unknown)
        assert isinstance(outcomes[1], UnknownJob)
        with pytest.raises(EnqueueUnknown, match="0 of 1 replicas"):
            await client.enqueue("tests.queues.jobs.add", 1, 1, job_id="w-2")
        await client.close()

    run_async(main)


def test_http_takes_a_list_of_jobs(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(low={"max_size": 2})

    async def main() -> None:
        app = await build_app(settings)
        async with TestClient(TestServer(app)) as http:
            await http.post("/api/enterprise/jobs", json={"name": "tests.queues.jobs.add", "args": [0, 0],
                                                          "job_id": "there"})
            response = await http.post("/api/enterprise/jobs", json=[
                {"name": "tests.queues.jobs.add", "args": [1, 2]},
                {"name": "tests.queues.jobs.add", "args": [1, 2], "job_id": "there"},
                {"name": "no.such.job"},
                {"name": "tests.queues.jobs.add", "args": [1, 2], "priority": "low", "delay": 60},
                {"name": "tests.queues.jobs.add", "args": [1, 2], "priority": "low"},
                {"name": "tests.queues.jobs.add", "args": [1, 2], "priority": "low"},
                {"name": "tests.queues.jobs.add", "args": [1, 2], "priority": "low"},
            ])
            assert response.status == 200
            body = await response.json()
            assert [job["status"] for job in body["jobs"]] == [202, 200, 400, 202, 202, 202, 429]
            assert body["jobs"][0]["created"] and body["jobs"][1] == {"status": 200, "id": "there", "queue": "medium",
                                                                      "state": "queued", "created": False}
            assert "no.such.job" in body["jobs"][2]["error"] and body["jobs"][3]["state"] == "delayed"
            assert body["jobs"][6]["queue"] == "low" and "full" in body["jobs"][6]["error"]
            assert (body["created"], body["existing"], body["rejected"]) == (4, 1, 2)
            job = await (await http.get(f"/api/enterprise/jobs/{body['jobs'][0]['id']}")).json()
            assert job["name"] == "tests.queues.jobs.add" and job["state"] == "queued"

            before = await app[CLIENT].redis.xlen(QueueKeys("medium").stream)
            for bad, says in [([], "1 to"), ([{"name": "tests.queues.jobs.add"}] * (MAX_BATCH_JOBS + 1), "1 to"),
                              ([{"name": "tests.queues.jobs.add"}, 5], "job 1"),
                              ([{"name": "tests.queues.jobs.add", "colour": "red"}], "unknown fields")]:
                refused = await http.post("/api/enterprise/jobs", json=bad)
                answer = await refused.json()
                assert refused.status == 400 and says in answer["error"], answer
            assert await app[CLIENT].redis.xlen(QueueKeys("medium").stream) == before, "a malformed list adds nothing"

    run_async(main)


def test_http_job_lists_answer_only_an_admin(make_settings: Callable[..., Settings]) -> None:
    settings = _with(make_settings(), "admin", token="s3cret-token-of-16+")

    async def main() -> None:
        app = await build_app(settings)
        async with TestClient(TestServer(app)) as http:
            jobs = [{"name": "tests.queues.jobs.add", "args": [1, 2]}]
            remote = await http.post("/api/enterprise/jobs", json=jobs, headers={"X-Forwarded-For": "203.0.113.9"})
            assert remote.status == 401
            wrong = await http.post("/api/enterprise/jobs", json=jobs, headers={"Authorization": "Bearer nope"})
            assert wrong.status == 403
            assert await app[CLIENT].redis.xlen(QueueKeys("medium").stream) == 0
            admitted = await http.post("/api/enterprise/jobs", json=jobs, headers={
                "X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer s3cret-token-of-16+"})
            assert admitted.status == 200 and (await admitted.json())["created"] == 1

    run_async(main)
