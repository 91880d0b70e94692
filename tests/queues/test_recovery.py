"""Recovery on real pool processes and a real redis-server: a consumer killed -9, a stuck job, a frozen Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from cluster.config import PRIORITIES, Settings
from cluster.queues.client import EnqueueUnknown, QueueClient, SyncQueueClient
from cluster.queues.keys import QueueKeys
from cluster.queues.policy import lease_seconds
from cluster.queues.pool import EXIT_DIED
from tests.queues.helpers import consume_until
from tests.redis_fixture import RedisServer
from tests.support import run_async, wait_for
from cluster.workers.app import build_app

pytestmark = pytest.mark.integration
Pools = Callable[[Settings, str], subprocess.Popen[bytes]]


def _runs(r: redis.Redis, key: str) -> list[tuple[str, int, float, int]]:
    """The runs a test job noted: (job id, attempt, time, pid)."""
    rows = []
    for value in r.lrange(key, 0, -1):
        job_id, attempt, at, pid = value.split(":")
        rows.append((job_id, int(attempt), float(at), int(pid)))
    return rows


def _job(r: redis.Redis, priority: str, job_id: str) -> dict[str, str]:
    return r.hgetall(QueueKeys(priority).job(job_id))


def test_kill_9_a_consumer_of_each_queue_its_jobs_rerun_at_once_and_innocents_keep_their_attempt(
        make_settings: Callable[..., Settings], start_pool: Pools) -> None:
    timeout = 20.0
    settings = make_settings(**{p: {"timeout": timeout} for p in PRIORITIES})
    r = redis.Redis.from_url(settings.redis.url or "", decode_responses=True)
    client = SyncQueueClient(settings)
    victims = {p: client.enqueue("tests.queues.jobs.hang_first", f"victim-{p}", priority=p) for p in PRIORITIES}
    innocents = {p: client.enqueue("tests.queues.jobs.count_run", f"innocent-{p}", 8.0, priority=p)
                 for p in PRIORITIES}
    pools = {p: start_pool(settings, p) for p in PRIORITIES}
    wait_for(lambda: all(r.llen(f"victim-{p}") and r.llen(f"innocent-{p}") for p in PRIORITIES), 60,
             what="every victim and innocent job to be running")
    assert not any(r.hget(QueueKeys(p).job(innocents[p].id), "state") == "done" for p in PRIORITIES)
    for p, pool in pools.items():
        assert _runs(r, f"victim-{p}")[0][3] == pool.pid
        # a job gets its running mark once it has run RUNNING_MARK_AFTER: most jobs finish sooner
        wait_for(lambda: _job(r, p, victims[p].id)["state"] == "running", 30, what="the running job to say so")
        os.kill(pool.pid, signal.SIGKILL)
    killed_at = time.time()
    for pool in pools.values():
        pool.wait(10)
    for p in PRIORITIES:
        start_pool(settings, p)  # what the supervisor does; the fresh consumer claims the dead one's jobs
    wait_for(lambda: all(_job(r, p, victims[p].id).get("state") == "done" for p in PRIORITIES), 60,
             what="every victim job to run again and complete")
    wait_for(lambda: all(_job(r, p, innocents[p].id).get("state") == "done" for p in PRIORITIES), 60,
             what="every innocent job to complete")
    for p in PRIORITIES:
        lease = lease_seconds(timeout, (), settings.queues.kill_grace)
        runs = _runs(r, f"victim-{p}")
        assert len(runs) == 2 and runs[1][1] == 1, f"{p}: a crash is not a failed attempt: {runs}"
        assert runs[1][2] - killed_at < lease, f"{p}: the rerun came {runs[1][2] - killed_at:.1f}s after the kill"
        innocent = _runs(r, f"innocent-{p}")
        assert [attempt for _, attempt, _, _ in innocent] == [1, 1], f"{p}: {innocent}"
        assert _job(r, p, innocents[p].id)["attempts"] == "1"
        assert int(r.hget(QueueKeys(p).stats, "failed") or 0) == 0


@pytest.mark.parametrize("name, reason", [("ignores_cancellation", "ignored cancellation"),
                                          ("blocks_the_loop", "blocked the event loop")])
def test_a_stuck_job_is_dead_lettered_by_name_and_its_neighbour_completes(
        make_settings: Callable[..., Settings], start_pool: Pools, name: str, reason: str) -> None:
    settings = make_settings(medium={"timeout": 0.5})
    r = redis.Redis.from_url(settings.redis.url or "", decode_responses=True)
    client = SyncQueueClient(settings)
    neighbour = client.enqueue("tests.queues.jobs.count_run", "neighbour", 2.0)
    stuck = client.enqueue(f"tests.queues.jobs.{name}", "stuck")
    first = start_pool(settings, "medium")
    assert first.wait(60) == -signal.SIGKILL, "the consumer kills itself to get rid of the stuck job"
    job = _job(r, "medium", stuck.id)
    assert job["state"] == "dead" and reason in job["error"], job
    [dead] = [fields for _, fields in r.xrange(QueueKeys("medium").dead)]
    assert dead["job_id"] == stuck.id and dead["reason"] == reason
    if name == "blocks_the_loop":
        assert "blocked the event loop for" in dead["error"]
    start_pool(settings, "medium")
    wait_for(lambda: _job(r, "medium", neighbour.id).get("state") == "done", 60, what="the neighbour to complete")
    assert _job(r, "medium", neighbour.id)["attempts"] == "1" and r.hget(QueueKeys("medium").job(neighbour.id),
                                                                          "crashes") == "0"
    assert len(_runs(r, "stuck")) == 1, "a dead-lettered job does not run again"


def test_a_poisoned_entry_is_dead_lettered_and_the_next_job_runs(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def main() -> None:
        client = QueueClient(settings)
        await client.ensure_group("high")
        await client.redis.xadd(QueueKeys("high").stream, {"job": "[" * 100_000 + "]" * 100_000})
        good = await client.enqueue("tests.queues.jobs.mark", "after-poison", "ok")

        async def good_done(c: QueueClient) -> bool:
            job = await c.get_job(good.id)
            return bool(job and job["state"] == "done")

        await consume_until(settings, ["high"], good_done)
        [entry] = await client.dead_entries("high")
        assert entry["reason"] == "undecodable" and "RecursionError" in entry["error"]
        await client.close()

    run_async(main)


def test_redis_frozen_during_an_enqueue_the_answer_names_the_id_and_a_retry_runs_once(
        make_settings: Callable[..., Settings], redis_server: RedisServer) -> None:
    settings = make_settings()
    assert redis_server.proc is not None

    async def main() -> None:
        app = await build_app(settings)
        async with TestClient(TestServer(app)) as http:
            body = {"name": "tests.queues.jobs.mark", "args": ["frozen-runs", "x"]}
            os.kill(redis_server.proc.pid, signal.SIGSTOP)
            try:
                response = await http.post("/api/enterprise/jobs", json=body)
                unknown = await response.json()
                with pytest.raises(EnqueueUnknown) as raised:
                    await QueueClient(settings).enqueue("tests.queues.jobs.mark", "frozen-runs", "y",
                                                       job_id="client-chosen")
            finally:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            assert response.status == 503 and unknown["enqueued"] == "unknown" and unknown["job_id"], unknown
            assert "retry with the same job_id" in unknown["error"]
            assert raised.value.job_id == "client-chosen"
            retried = await http.post("/api/enterprise/jobs", json={**body, "job_id": unknown["job_id"]})
            assert retried.status in (200, 202) and (await retried.json())["id"] == unknown["job_id"]
        client = QueueClient(settings)
        again = await client.enqueue("tests.queues.jobs.mark", "frozen-runs", "y", job_id="client-chosen")

        async def both_done(c: QueueClient) -> bool:
            jobs = [await c.get_job(unknown["job_id"]), await c.get_job(again.id)]
            return all(j and j["state"] == "done" for j in jobs)

        await consume_until(settings, ["high"], both_done)
        await asyncio.sleep(0.5)  # a duplicate would be in the stream by now: none may run
        assert sorted(await client.redis.lrange("frozen-runs", 0, -1)) == ["x", "y"]
        assert await client.redis.xlen(QueueKeys("high").stream) == 0
        await client.close()

    run_async(main)


def test_a_consumer_loop_that_dies_ends_the_process_with_a_log_line(
        make_settings: Callable[..., Settings], start_pool: Pools, tmp_path: Path) -> None:
    settings = make_settings()
    r = redis.Redis.from_url(settings.redis.url or "", decode_responses=True)
    pool = start_pool(settings, "high")
    wait_for(lambda: r.zcard(QueueKeys("high").consumers), 60, what="the consumer to beat")
    r.delete(QueueKeys("high").stream)
    r.set(QueueKeys("high").stream, "not a stream")  # every stream command now fails with WRONGTYPE
    assert pool.wait(60) == EXIT_DIED
    log = (tmp_path / "pool-0.log").read_text()
    assert "read loop ended" in log and "ResponseError" in log, log[-2000:]


def test_a_consumer_over_its_memory_cap_finishes_and_exits(make_settings: Callable[..., Settings],
                                                            start_pool: Pools, tmp_path: Path) -> None:
    settings = make_settings(max_rss_mb=1)
    pool = start_pool(settings, "high")
    assert pool.wait(60) == 0
    assert "max_rss_mb" in (tmp_path / "pool-0.log").read_text()
