"""Periodic jobs on a real redis-server: each tick enqueued exactly once by several schedulers,
and a killed leader's place taken with no tick doubled.

The schedule fires every second (``* * * * * *``); the tests wait for ticks, never for a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cluster.config import Settings
from cluster.queues import registry
from cluster.queues.client import QueueClient
from cluster.queues.connection import async_client
from cluster.queues.keys import PeriodicKeys, QueueKeys
from cluster.queues.periodic import ID_PREFIX, tick_of
from cluster.queues.scheduler import Scheduler, status
from tests.queues import periodic_jobs
from tests.support import in_loop, run_cli

EVERY_SECOND = "* * * * * *"
LEASE = 1.0


def _stream_ticks(redis_url: str, priority: str, name: str) -> list[float]:
    """The ticks of ``name``'s jobs in the queue's stream, one entry each, in stream order."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        prefix = f"{ID_PREFIX}{name}:"
        ids = [json.loads(fields["job"])["id"] for _, fields in client.xrange(QueueKeys(priority).stream)
               if "job" in fields]
    finally:
        client.close()
    return [tick_of(i) or 0.0 for i in ids if i.startswith(prefix)]


def _drop_jobs(redis_url: str, priority: str, name: str) -> None:
    """Remove ``name``'s entries and job hashes, so no later test's consumer meets them."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = QueueKeys(priority)
    try:
        for entry_id, fields in client.xrange(keys.stream):
            job_id = json.loads(fields.get("job", "{}")).get("id", "")
            if job_id.startswith(f"{ID_PREFIX}{name}:"):
                client.xdel(keys.stream, entry_id)
                client.delete(keys.job(job_id))
    finally:
        client.close()


@pytest.fixture
def periodic_job(redis_url: str) -> Iterator[str]:
    """A periodic job of its own name (so no other test's ticks share its ids), every second, on ``low``."""
    name = f"periodic-test-{uuid.uuid4().hex[:8]}"
    registry.job(name, priority="low", cron=EVERY_SECOND)(_noop)
    yield name
    registry.REGISTRY.pop(name, None)
    _drop_jobs(redis_url, "low", name)


async def _noop() -> None:
    """Never run: the tests count the ticks in the queue's stream."""


def _envelope_field_is_job() -> None:
    from cluster.queues.envelope import FIELD

    assert FIELD == "job", FIELD  # _stream_ticks reads the envelope under this field


async def _run_schedulers(settings: Settings, name: str, keys: PeriodicKeys, count: int,
                          until: Callable[[list[Scheduler]], bool]) -> list[Scheduler]:
    """``count`` schedulers, each with its own Redis client and queue client, until ``until`` holds."""
    clients = [QueueClient(settings) for _ in range(count)]
    stops = [asyncio.Event() for _ in range(count)]
    schedulers = [Scheduler(async_client(settings.redis.url or ""), {name: EVERY_SECOND},
                            lambda n, i, c=c: c.enqueue(n, job_id=i), LEASE, stop, keys)
                  for c, stop in zip(clients, stops)]
    tasks = [asyncio.create_task(s.loop()) for s in schedulers]
    try:
        while not until(schedulers):
            for task in tasks:
                if task.done():
                    task.result()
            await asyncio.sleep(0.05)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
        for scheduler, client in zip(schedulers, clients):
            await scheduler.redis.aclose()
            await client.close()
    return schedulers


def _consecutive(ticks: list[float]) -> bool:
    return ticks == [ticks[0] + i for i in range(len(ticks))]


@in_loop
async def test_two_schedulers_enqueue_each_tick_once(make_settings: Callable[..., Settings], redis_url: str,
                                                     periodic_job: str) -> None:
    _envelope_field_is_job()
    keys = PeriodicKeys("{cq:periodic-" + periodic_job + "}")
    schedulers = await _run_schedulers(make_settings(), periodic_job, keys, 2,
                                       lambda ss: sum(len(s.enqueued) for s in ss) >= 5)
    ticks = _stream_ticks(redis_url, "low", periodic_job)
    assert len(ticks) >= 5 and not [t for t, n in Counter(ticks).items() if n > 1]
    assert _consecutive(sorted(ticks)), ticks  # none missed while a leader ran
    # One scheduler led throughout: the other enqueued nothing.
    assert sorted(len(s.enqueued) for s in schedulers)[0] == 0


@in_loop
async def test_a_second_leader_cannot_enqueue_a_tick_again(make_settings: Callable[..., Settings], redis_url: str,
                                                           periodic_job: str) -> None:
    """Two leaders at once (the lease lost mid-tick): both fire the same ticks, the ids add each once."""
    keys_a = PeriodicKeys("{cq:periodic-a-" + periodic_job + "}")
    keys_b = PeriodicKeys("{cq:periodic-b-" + periodic_job + "}")
    settings = make_settings()
    stop = asyncio.Event()
    client_a, client_b = QueueClient(settings), QueueClient(settings)
    a = Scheduler(client_a.redis, {periodic_job: EVERY_SECOND}, lambda n, i: client_a.enqueue(n, job_id=i),
                  LEASE, stop, keys_a)
    b = Scheduler(client_b.redis, {periodic_job: EVERY_SECOND}, lambda n, i: client_b.enqueue(n, job_id=i),
                  LEASE, stop, keys_b)
    try:
        start = time.time() - 3
        for scheduler in (a, b):  # both recorded the same starting tick: both see ticks start+1 .. now due
            await scheduler.redis.hset(scheduler.keys.last, periodic_job, int(start))
        for _ in range(3):
            await a.turn()
            await b.turn()
    finally:
        await client_a.close()
        await client_b.close()
    assert a.leading and b.leading
    ticks = _stream_ticks(redis_url, "low", periodic_job)
    assert ticks and len(ticks) == len(set(ticks)), ticks
    assert len(a.enqueued) + len(b.enqueued) == len(ticks)


@in_loop
async def test_a_new_schedule_starts_from_now(make_settings: Callable[..., Settings], redis_url: str,
                                              periodic_job: str) -> None:
    """First sight records the latest tick as the starting point: nothing is enqueued for the past."""
    keys = PeriodicKeys("{cq:periodic-" + periodic_job + "}")
    settings = make_settings()
    client = QueueClient(settings)
    scheduler = Scheduler(client.redis, {periodic_job: EVERY_SECOND}, lambda n, i: client.enqueue(n, job_id=i),
                          LEASE, asyncio.Event(), keys)
    try:
        await scheduler.turn()
        recorded = await client.redis.hget(keys.last, periodic_job)
        view = await status(client.redis, {periodic_job: EVERY_SECOND}, time.time(), keys)
    finally:
        await client.close()
    assert scheduler.enqueued == [] and recorded is not None
    assert view["leader"] and view["schedules"][0]["last_tick"] == float(recorded)
    assert view["schedules"][0]["next_tick"] > float(recorded)


def _wait(condition: Callable[[], Any], what: str, procs: list[Any]) -> Any:
    while True:
        value = condition()
        if value:
            return value
        for proc in procs:
            assert proc.poll() is None or proc.returncode == -signal.SIGKILL, f"pool exited: {proc.returncode}"
        time.sleep(0.05)


def test_killing_the_leader_hands_over_without_doubling_a_tick(make_settings: Callable[..., Settings],
                                                                redis_url: str, start_pool: Any) -> None:
    """Two real pool processes schedule; the leader is killed with -9; the other takes over."""
    keys = PeriodicKeys()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(keys.leader, keys.last)
    _drop_jobs(redis_url, periodic_jobs.PRIORITY, periodic_jobs.NAME)
    settings = make_settings(jobs_module="tests.queues.periodic_jobs", periodic_lease=LEASE)
    procs = [start_pool(settings, "low"), start_pool(settings, "low")]
    try:
        ticks = lambda: _stream_ticks(redis_url, periodic_jobs.PRIORITY, periodic_jobs.NAME)  # noqa: E731
        _wait(lambda: len(ticks()) >= 3, "three ticks", procs)
        leader = client.get(keys.leader) or ""
        [killed] = [p for p in procs if leader.rpartition(":")[0].endswith(f"-{p.pid}")]
        [survivor] = [p for p in procs if p is not killed]
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        before = len(ticks())
        _wait(lambda: (client.get(keys.leader) or "").rpartition(":")[0].endswith(f"-{survivor.pid}"),
              "the survivor leads", procs)
        _wait(lambda: len(ticks()) >= before + 3, "three ticks more", procs)
        seen = ticks()
    finally:
        client.close()
        _drop_jobs(redis_url, periodic_jobs.PRIORITY, periodic_jobs.NAME)
    assert not [t for t, n in Counter(seen).items() if n > 1], seen
    assert seen == sorted(seen)  # never a tick before one already enqueued


def test_cli_lists_each_schedule_with_its_ticks_and_the_leader(make_settings: Callable[..., Settings],
                                                               redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(jobs_module="tests.queues.periodic_jobs")
    state = tmp_path / "state"
    state.mkdir()
    (state / "settings.json").write_text(settings.model_dump_json())
    keys = PeriodicKeys()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.delete(keys.leader, keys.last)
        idle = run_cli("periodic", "--state-dir", str(state))
        client.set(keys.leader, "host-1-4242:abcd", px=60_000)
        client.hset(keys.last, periodic_jobs.NAME, 1_800_000_000)
        listed = run_cli("periodic", "--json", "--state-dir", str(state))
        table = run_cli("periodic", "--state-dir", str(state))
    finally:
        client.delete(keys.leader, keys.last)
        client.close()
    assert idle.returncode == 0, idle.stderr
    assert "leader: none" in idle.stdout and periodic_jobs.NAME in idle.stdout
    body = json.loads(listed.stdout)
    assert body["leader"] == "host-1-4242"
    [row] = body["schedules"]
    assert (row["name"], row["cron"], row["last_tick"]) == (periodic_jobs.NAME, "* * * * * *", 1_800_000_000.0)
    assert row["next_tick"] > 0
    assert "2027-01-15 08:00:00" in table.stdout and "leader: host-1-4242" in table.stdout
