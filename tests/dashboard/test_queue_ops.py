"""The dashboard's queue operations against a real Redis: cursor pages, search, retry, delete, run now, pause."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio

from cluster.dashboard import queue_ops
from cluster.queues.envelope import FIELD, Envelope
from cluster.queues.keys import QueueKeys
from tests.support import run_async

T = TypeVar("T")
HIGH = QueueKeys("high")


def run(redis_url: str, action: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await action(client)
        finally:
            await client.aclose()

    return run_async(main)


def dead_fields(index: int, name: str) -> dict[str, Any]:
    envelope = Envelope(id=f"job-{index}", name=name, priority="high", args=[index], kwargs={}, max_retries=0,
                        enqueued_at=time.time(), not_before=time.time())
    return {FIELD: envelope.encode(), "job_id": envelope.id, "name": name, "reason": "retries exhausted",
            "error": "RuntimeError: boom", "traceback": "", "attempts": 1, "failed_at": time.time()}


def fill_dead(redis_url: str, count: int, every_nth_other: int = 0) -> None:
    """``count`` dead entries of job ``a``; every ``every_nth_other``-th one of job ``b`` instead."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    with client.pipeline(transaction=False) as pipe:
        for i in range(count):
            name = "b" if every_nth_other and i % every_nth_other == 0 else "a"
            pipe.xadd(HIGH.dead, dead_fields(i, name))
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
    client.close()


def test_pages_walk_the_dead_set_newest_first_without_overlap(redis_url: str) -> None:
    fill_dead(redis_url, 23)
    seen: list[str] = []
    cursor = None
    while True:
        page = run(redis_url, lambda c: queue_ops.dead_page(c, "high", cursor, limit=10))
        seen += [e["job_id"] for e in page.entries]
        assert page.total == 23
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"job-{i}" for i in range(22, -1, -1)]


def test_a_name_search_returns_only_that_job_and_goes_on_where_it_stopped(redis_url: str) -> None:
    fill_dead(redis_url, 30, every_nth_other=3)  # b at 0, 3, ..., 27
    first = run(redis_url, lambda c: queue_ops.dead_page(c, "high", name="b", limit=4))
    assert [e["job_id"] for e in first.entries] == ["job-27", "job-24", "job-21", "job-18"]
    rest = run(redis_url, lambda c: queue_ops.dead_page(c, "high", first.next_cursor, name="b", limit=10))
    assert [e["job_id"] for e in rest.entries] == ["job-15", "job-12", "job-9", "job-6", "job-3", "job-0"]
    assert rest.next_cursor is None


def test_retry_one_delete_one_and_retry_all_matching(redis_url: str) -> None:
    fill_dead(redis_url, 6, every_nth_other=2)  # b: 0, 2, 4
    page = run(redis_url, lambda c: queue_ops.dead_page(c, "high"))
    newest = page.entries[0]
    assert run(redis_url, lambda c: queue_ops.retry_dead(c, "high", [newest["entry"]]))["retried"] == 1
    second = page.entries[1]
    assert run(redis_url, lambda c: queue_ops.delete_dead(c, "high", [second["entry"]]))["deleted"] == 1
    assert run(redis_url, lambda c: queue_ops.retry_all_dead(c, name="b"))["retried"] == 2

    async def check(client: redis.asyncio.Redis) -> None:
        left = [f["job_id"] for _, f in await client.xrange(HIGH.dead)]
        assert left == ["job-1", "job-3"]
        queued = [json.loads(f[FIELD])["id"] for _, f in await client.xrange(HIGH.stream)]
        assert sorted(queued) == ["job-0", "job-2", "job-5"]
        assert await client.hget(HIGH.job("job-5"), "state") == "queued"

    run(redis_url, check)
    with pytest.raises(queue_ops.QueueOpError):
        run(redis_url, lambda c: queue_ops.retry_dead(c, "high", ["1-1"]))


def test_run_now_makes_a_delayed_job_due_and_pause_is_a_key(redis_url: str) -> None:
    async def scenario(client: redis.asyncio.Redis) -> None:
        await client.zadd(HIGH.delayed, {"later": (time.time() + 3600) * 1000})
        await client.hset(HIGH.job("later"), mapping={"state": "retrying", "attempts": 2,
                                                     "envelope": dead_fields(1, "a")[FIELD], "error": "boom"})
        rows = await queue_ops.delayed_jobs(client, "high")
        assert [(r["id"], r["state"], r["name"], r["attempts"]) for r in rows] == [("later", "retrying", "a", 2)]
        await queue_ops.run_now(client, "high", "later")
        assert await client.zscore(HIGH.delayed, "later") == 0
        with pytest.raises(queue_ops.QueueOpError):
            await queue_ops.run_now(client, "high", "nope")
        await queue_ops.set_paused(client, "high", True)
        assert (await queue_ops.paused_queues(client))["high"] and await client.exists(HIGH.paused)
        await queue_ops.set_paused(client, "high", False)
        assert not any((await queue_ops.paused_queues(client)).values())
        with pytest.raises(queue_ops.QueueOpError):
            await queue_ops.set_paused(client, "nope", True)

    run(redis_url, scenario)


def test_a_page_of_a_100000_entry_dead_set_reads_one_page_not_the_set(redis_url: str) -> None:
    """Prints the server time of a first page, a deep page and a name search (see the report)."""
    fill_dead(redis_url, 100_000, every_nth_other=1000)
    timings = {}
    deep = None
    for label, cursor_of, name in (("first page", None, None), ("deep page", "deep", None), ("search", None, "b")):
        if cursor_of == "deep":
            deep = run(redis_url, lambda c: c.xrange(HIGH.dead, count=1))[0][0].split("-")
            cursor = f"{int(deep[0]) + 1}-0"
        else:
            cursor = None
        started = time.perf_counter()
        page = run(redis_url, lambda c: queue_ops.dead_page(c, "high", cursor, name))
        timings[label] = round((time.perf_counter() - started) * 1000, 1)
        assert page.total == 100_000 and page.scanned <= queue_ops.SCAN_BUDGET
        assert page.entries and (name is None or all(e["name"] == "b" for e in page.entries))
    print(f"dead set of 100,000: server time ms {timings}")


def test_history_in_redis_outlives_the_process_that_wrote_it(redis_url: str) -> None:
    from cluster.dashboard.history import History

    async def scenario(client: redis.asyncio.Redis) -> None:
        first = History(max_points=3, client=client)
        first.loaded = False
        for at in range(5):
            await first.add_point({"at": float(at)})
        await first.add_event({"at": 4.0, "kind": "autoscale", "reason": "mean CPU high"})
        assert await client.llen("cluster:dashboard:points") == 3  # capped
        restarted = History(max_points=3, client=client)
        restarted.loaded = False
        await restarted.add_point({"at": 5.0})
        assert [p["at"] for p in restarted.points(0)] == [3.0, 4.0, 5.0]
        assert restarted.events(0)[0]["reason"] == "mean CPU high" and restarted.backend == "redis"

    run(redis_url, scenario)
