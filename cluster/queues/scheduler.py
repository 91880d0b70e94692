"""The periodic jobs' scheduler: a loop in every pool process; the one holding the lease enqueues the ticks.

Each turn the process renews or tries to take the lease (``cluster.queues.leader``). As leader it asks
``periodic.due_tick`` which tick of each schedule is due since the one recorded in Redis, enqueues it
with the id ``periodic:<name>:<tick>``, then records the tick (never moving it back).

Exactly once per tick: the lease makes one process the scheduler; should two ever act at once (a leader
stalled past its lease while another took over), both enqueue the same tick under the same id, and the
enqueue adds a job only when no job has that id (a tick's job is known while queued, then for
``queues.result_ttl`` after it ends), and the recorded tick keeps a late scheduler from going back.
A crash between the enqueue and the record repeats the enqueue at the next turn, which the id absorbs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio

from cluster.queues import Enqueued, QueueFull, periodic, registry  # the package's public names: client.py is being split
from cluster.queues.connection import UNAVAILABLE_ERRORS, QueueUnavailable
from cluster.queues.keys import PeriodicKeys
from cluster.queues.leader import Lease, LeasePolicy, holder_name
from cluster.queues.scripts import ADVANCE_TICK

log = logging.getLogger("queues.periodic")

Enqueue = Callable[[str, str], Awaitable[Enqueued]]
"""Enqueues job ``name`` (no arguments) with id ``job_id``: ``api.enqueue(name, job_id=job_id)`` in a pool."""


class Scheduler:
    """The scheduler loop of one process (``loop()``), for ``schedules`` (job name -> cron)."""

    def __init__(self, redis_client: redis.asyncio.Redis, schedules: Mapping[str, str], enqueue: Enqueue,
                 lease: float, stopping: asyncio.Event, keys: PeriodicKeys = PeriodicKeys(),
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis_client
        self.schedules = dict(schedules)
        self.enqueue = enqueue
        self.policy = LeasePolicy(lease)
        self.lease = Lease(redis_client, keys.leader, self.policy)
        self.keys = keys
        self.stopping = stopping
        self.clock = clock
        self.leading = False
        self.enqueued: list[str] = []
        """The ids of the jobs this process added (created), oldest first: what it fired as leader."""
        self._advance = redis_client.register_script(ADVANCE_TICK)

    async def loop(self) -> None:
        """Turns until the stop; then gives the lease up if held. A turn that fails is tried again."""
        try:
            while not self.stopping.is_set():
                try:
                    wait = await self.turn()
                except UNAVAILABLE_ERRORS as exc:
                    log.debug("scheduler turn skipped: %s", exc)
                    self.leading, wait = False, self.policy.check_every
                except Exception:  # logged, and tried again: a scheduler must not end silently
                    log.exception("periodic scheduler turn failed; the next in %g s", self.policy.check_every)
                    wait = self.policy.check_every
                try:
                    await asyncio.wait_for(self.stopping.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            if self.leading:
                try:
                    await self.lease.release()
                except UNAVAILABLE_ERRORS:
                    pass  # it expires on its own

    async def turn(self) -> float:
        """One turn: hold the lease, and as leader enqueue each due tick. Returns how long to wait."""
        was_leading, self.leading = self.leading, await self.lease.hold()
        if self.leading != was_leading:
            log.info("periodic scheduler %s", "leads" if self.leading else "follows",
                     extra={"token": self.lease.token})
        if not self.leading:
            return self.policy.wait(False, None)
        now = self.clock()
        names = list(self.schedules)
        recorded = await self.redis.hmget(self.keys.last, names)
        for name, last in zip(names, recorded):
            await self._fire(name, None if last is None else float(last), now)
        now = self.clock()
        return self.policy.wait(True, min(periodic.next_tick(c, now) for c in self.schedules.values()) - now)

    async def _fire(self, name: str, last: float | None, now: float) -> None:
        cron = self.schedules[name]
        if last is None:  # first sight: the latest tick is the starting point, not a tick to run
            await self._record(name, periodic.latest_tick(cron, now))
            return
        due = periodic.due_tick(cron, last, now)
        if due.tick is None:
            return
        job_id = periodic.job_id(name, due.tick)
        if due.skipped:
            log.warning("periodic job %s: ticks since %d were missed (no scheduler ran); only the latest, %d, "
                        "is enqueued", name, last, due.tick, extra={"job": name})
        try:
            outcome = await self.enqueue(name, job_id)
        except (QueueFull, QueueUnavailable) as exc:  # a full queue, an unknown outcome: the next turn retries
            log.warning("periodic job %s: tick %d not enqueued (%s); tried again next turn", name, due.tick, exc,
                        extra={"job": name})
            return
        if outcome.created:
            self.enqueued.append(job_id)
        await self._record(name, due.tick)

    async def _record(self, name: str, tick: float) -> None:
        await self._advance(keys=[self.keys.last], args=[name, int(tick)])


class Running:
    """A scheduler task beside a pool's consumer (``start_if_any``); ``stop()`` ends it and frees the lease."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.task = asyncio.create_task(scheduler.loop(), name="periodic")

    async def stop(self) -> None:
        self.scheduler.stopping.set()  # the loop notices it: cancelling a redis-py call can lose the cancellation
        await asyncio.gather(self.task, return_exceptions=True)


def start_if_any(redis_client: redis.asyncio.Redis, lease: float,
                 enqueue: Callable[..., Awaitable[Enqueued]]) -> Running | None:
    """Start this process's scheduler when the jobs module registers periodic jobs (None: it has none).

    Every pool process runs one; the lease picks the one that enqueues. ``enqueue``: ``api.enqueue``.
    """
    schedules = registry.schedules()
    if not schedules:
        return None

    async def enqueue_tick(name: str, job_id: str) -> Enqueued:
        return await enqueue(name, job_id=job_id)

    return Running(Scheduler(redis_client, schedules, enqueue_tick, lease, asyncio.Event()))


async def status(redis_client: redis.asyncio.Redis, schedules: Mapping[str, str], now: float,
                 keys: PeriodicKeys = PeriodicKeys()) -> dict[str, Any]:
    """The leader (its consumer name, None when no process holds the lease) and, per schedule, its cron,
    last tick recorded and next tick."""
    names = list(schedules)
    token = await redis_client.get(keys.leader)
    recorded = await redis_client.hmget(keys.last, names) if names else []
    return {
        "leader": holder_name(token),
        "schedules": [{"name": name, "cron": schedules[name], "last_tick": None if last is None else float(last),
                       "next_tick": periodic.next_tick(schedules[name], now)}
                      for name, last in zip(names, recorded)],
    }
