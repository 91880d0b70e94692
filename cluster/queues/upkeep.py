"""A consumer's upkeep: the chores beside its jobs, in one loop that turns every ``queues.upkeep_every`` s.

Every turn it moves the due delayed jobs onto the queue; on their own cadence it claims the jobs of dead
consumers of this host, refreshes its heartbeat and the queue gauges, checks its memory, renews the
lease of the entries it holds longer than the queue's lease, and takes its turn as the queue's reaper.
A chore's cadence is counted in turns: one shorter than ``upkeep_every`` runs every turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import psutil

from cluster.queues import metrics
from cluster.queues.client import QueueClient
from cluster.queues.connection import UNAVAILABLE_ERRORS
from cluster.queues.envelope import FIELD
from cluster.queues.in_hand import Hand
from cluster.queues.keys import GROUP
from cluster.queues.policy import lease_seconds, reap_interval
from cluster.queues.recovery import Recovery
from cluster.queues.scripts import MOVE_DUE

log = logging.getLogger("queues.consumer")

#: How often (s) the heartbeat and the queue gauges are refreshed; well under ``admin.HEARTBEAT_FRESH_MS``,
#: past which a consumer no longer counts as alive.
HEARTBEAT_EVERY = 2.0
#: A heartbeat older than this (ms) is dropped from the queue's consumer set, whoever it was.
HEARTBEAT_KEEP_MS = 600_000


def due(now: float, last: Mapping[str, float], every: Mapping[str, float]) -> list[str]:
    """The chores of ``every`` (name -> interval) whose interval has passed since ``last`` ran them, in order."""
    return [name for name, interval in every.items() if now - last.get(name, 0.0) >= interval]


class Upkeep:
    """The upkeep loop of one consumer (``loop()``)."""

    def __init__(self, hand: Hand, client: QueueClient, lease: float, recovery: Recovery,
                 stopping: asyncio.Event, stop: Callable[[], None]) -> None:
        self.hand = hand
        self.client = client
        self.lease = lease
        self.recovery = recovery
        self.stopping = stopping
        self.stop = stop
        queues = hand.settings.queues
        self.every = queues.upkeep_every
        self.move_batch = queues.move_batch
        self.reap_every = reap_interval(lease)
        self.cadence = {"reclaim": queues.reclaim_every, "gauges": HEARTBEAT_EVERY, "renew": lease / 3,
                        "reap": self.reap_every}
        self._move = hand.redis.register_script(MOVE_DUE)

    async def loop(self) -> None:
        """Until the stop: a turn every ``upkeep_every`` s. Redis being unavailable skips the rest of a turn."""
        last: dict[str, float] = {}
        while not self.stopping.is_set():
            try:
                await self.move_due()
                now = time.monotonic()
                for chore in due(now, last, self.cadence):
                    last[chore] = now
                    await self._run(chore)
            except UNAVAILABLE_ERRORS as exc:
                log.debug("upkeep skipped: %s", exc)
            try:
                await asyncio.wait_for(self.stopping.wait(), self.every)
            except TimeoutError:
                pass

    async def _run(self, chore: str) -> None:
        if chore == "reclaim":
            await self.recovery.reclaim_dead()
        elif chore == "gauges":
            await self._heartbeat()
            self._check_memory()
        elif chore == "renew":
            await self._renew_leases()
        else:
            await self.recovery.reap(self.reap_every)

    async def move_due(self) -> int:
        """Move every due delayed job onto the stream; returns how many."""
        moved = 0
        while True:
            keys = self.hand.keys
            count = await self._move(keys=[keys.delayed, keys.stream],
                                     args=[int(time.time() * 1000), self.move_batch, keys.job_prefix, FIELD])
            moved += count
            if count < self.move_batch:
                return moved

    async def _heartbeat(self) -> None:
        now_ms = int(time.time() * 1000)
        consumers = self.hand.keys.consumers
        async with self.hand.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(consumers, {self.hand.name: now_ms})
            pipe.zremrangebyscore(consumers, "-inf", now_ms - HEARTBEAT_KEEP_MS)
            await pipe.execute()
        metrics.set_queue_gauges(self.hand.priority, await self.client.queue_status(self.hand.priority))

    def _check_memory(self) -> None:
        """Over ``queues.max_rss_mb``: finish the jobs in hand and exit, so the pool starts a fresh process."""
        cap = self.hand.settings.queues.max_rss_mb
        if cap is None or self.stopping.is_set():
            return
        rss_mb = psutil.Process().memory_info().rss / 2**20
        if rss_mb > cap:
            log.warning("consumer uses %.0f MB, over queues.max_rss_mb=%d: it finishes its %d job(s) and exits "
                        "so its pool replaces it", rss_mb, cap, len(self.hand.running),
                        extra={"queue": self.hand.priority, "consumer": self.hand.name, "rss_mb": round(rss_mb)})
            self.stop()

    async def _renew_leases(self) -> None:
        """Reset the idle time of the jobs in hand whose own lease is longer than the queue's (sent here
        with a longer timeout than this queue's jobs), and of the held entries of a paused queue, so the
        reaper leaves them alone."""
        kill_grace = self.hand.settings.queues.kill_grace
        ids = [entry_id for entry_id, job in self.hand.running.items()
               if lease_seconds(job.timeout, (), kill_grace) > self.lease]
        ids.extend(self.hand.held)
        if ids:
            await self.hand.redis.xclaim(self.hand.keys.stream, GROUP, self.hand.name, 0, ids, justid=True)
