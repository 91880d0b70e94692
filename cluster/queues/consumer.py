"""The consumer: one asyncio loop that drains one queue with bounded concurrency.

Reads come in batches (XREADGROUP COUNT = free slots) and no process is forked per job. The consumer
reads and runs; its other concerns are modules of their own, each with its own loop or thread, as
dramatiq's worker has a consumer thread and worker threads:

- ``acks``: the outcomes (done, failed, running marks) flushed in batches (the flush loop);
- ``stuck_jobs``: the guard that kills the process for a job stuck past its grace (the watch loop and
  the loop watchdog's thread, which asks ``in_hand.on_the_loop`` which job in hand holds the loop);
- ``recovery``: claiming the jobs of dead consumers of this host, and the reaper;
- ``upkeep``: due delayed jobs, heartbeat and gauges, memory cap, lease renewal (the upkeep loop).

Nothing ends a consumer silently: an entry that cannot be decoded or started goes to the dead letter
stream with the exception as its reason; a loop that ends on an exception stops the consumer (logged)
and the process exits non-zero, so its pool replaces it; a job that outlives its timeout plus
``kill_grace`` is dead-lettered by name and the consumer kills itself, its other jobs rerunning at once
without penalty.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import traceback

from redis.exceptions import ResponseError

from cluster.config import Settings
from cluster.db import Router
from cluster.observability.context import read_your_writes_var, request_id_var
from cluster.queues import identity, metrics, registry
from cluster.queues.acks import Acks
from cluster.queues.client import QueueClient
from cluster.queues.connection import UNAVAILABLE_ERRORS
from cluster.queues.context import JobContext, set_current
from cluster.queues.envelope import Envelope
from cluster.queues.execute import HandlerRunner, HungHandler, JobTimeout
from cluster.queues.failures import Failure
from cluster.queues.in_hand import Hand, Running
from cluster.queues.keys import GROUP, QueueKeys
from cluster.queues.policy import backoff_delay, lease_seconds
from cluster.queues.recovery import Recovery
from cluster.queues.stuck_jobs import StuckJobGuard
from cluster.queues.upkeep import Upkeep

log = logging.getLogger("queues.consumer")

#: How long (ms) a blocking read waits for an entry; a stop waits at most this long for the read loop
#: (the loops notice the stop themselves: cancelling a task inside a redis-py call can lose the cancellation).
BLOCK_MS = 1000
#: How often (s) a non-blocking read checks the pause flag (`cluster queues pause`): a paused queue takes
#: no new entries at most this late; a blocking read reads the flag in its own round trip.
PAUSE_CHECK_EVERY = 0.5
#: First and longest backoff (s) after a Redis error in a row (doubling, with jitter).
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0


class ConsumerDied(RuntimeError):
    """One of the consumer's loops ended on an exception; the process must be replaced."""


class Consumer:
    def __init__(self, settings: Settings, priority: str, client: QueueClient, name: str | None = None,
                 db: Router | None = None) -> None:
        self.settings = settings
        self.db = db
        self.priority = priority
        self.client = client
        self.redis = client.redis
        self.keys = QueueKeys(priority)
        pool = settings.queues.pool(priority)
        self.concurrency = pool.concurrency
        self.timeout = pool.timeout
        #: A consumer with fewer than half its slots free waits this long (s) before reading, so that one
        #: read fetches a batch instead of paying a round trip per job as short jobs free their slots.
        self.read_gather = settings.queues.read_gather
        own_timeouts = (s.timeout for s in registry.REGISTRY.values() if s.priority == priority)
        self.lease = lease_seconds(pool.timeout, own_timeouts, settings.queues.kill_grace)
        self.name = name or identity.consumer_name()
        self.runner = HandlerRunner(pool.concurrency, settings.queues.kill_grace)
        self.hand = Hand(settings, priority, self.name, self.redis, self.keys)
        self.running = self.hand.running
        self.held = self.hand.held
        self.died: str | None = None
        self._slot_free = asyncio.Event()
        self._gathered = False
        self._stopping = asyncio.Event()
        self._pause_seen = (0.0, False)
        self._duration = metrics.DURATION.labels(priority)
        self.acks = Acks(self.hand)
        self.recovery = Recovery(self.hand, self.lease, self.acks)
        self.guard = StuckJobGuard(self.hand, self.acks)
        self.upkeep = Upkeep(self.hand, client, self.lease, self.recovery, self._stopping, self.stop)

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Consume until ``stop()``; then finish the jobs in hand and flush their acks.

        Raises ConsumerDied (after that same orderly stop) when one of its loops died.
        """
        if not await self._until_ready():
            return  # stopped while Redis was unreachable: nothing was taken
        log.info("consumer started", extra={"queue": self.priority, "consumer": self.name,
                                            "concurrency": self.concurrency, "lease": self.lease})
        guards = [asyncio.create_task(self.guard.watchdog.tick(), name="loop-lag"),
                  asyncio.create_task(self.guard.watch(), name="watch")]
        loops = [asyncio.create_task(self._read_loop(), name="read"),
                 asyncio.create_task(self.acks.loop(self._stopping, self._pause_after), name="flush"),
                 asyncio.create_task(self.upkeep.loop(), name="upkeep")]
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([stopping, *loops, *guards], return_when=asyncio.FIRST_COMPLETED)
        self._notice_death([*loops, *guards])
        reader, flusher, upkeep = loops
        # The loops notice the stop themselves (a read blocks at most BLOCK_MS): cancelling
        # a task in the middle of a redis-py call can lose the cancellation.
        await asyncio.gather(reader, upkeep, return_exceptions=True)
        self._give_back_held()
        if self.running:
            await asyncio.gather(*(r.task for r in self.running.values() if r.task), return_exceptions=True)
        self.acks.needed.set()
        await asyncio.gather(flusher, return_exceptions=True)
        try:
            await self.acks.flush()
            await self._leave()
        except Exception as exc:  # the stop goes on: what was not acknowledged runs again
            log.warning("could not flush acks at stop (the jobs will run again): %r", exc,
                        extra={"queue": self.priority, "consumer": self.name})
        for task in guards:
            task.cancel()
        await asyncio.gather(*guards, return_exceptions=True)
        self.runner.shutdown()
        log.info("consumer stopped", extra={"queue": self.priority, "consumer": self.name})
        if self.died:
            raise ConsumerDied(self.died)

    def _give_back_held(self) -> None:
        """At a stop, put the entries held for a paused queue back on it: they never ran, so no crash counts."""
        held = dict(self.held)
        self.held.clear()
        for entry_id, fields in held.items():
            self.recovery.take_back(entry_id, fields, "its consumer stopped while the queue was paused",
                                    penalty=False)

    def _notice_death(self, tasks: list[asyncio.Task[None]]) -> None:
        """A loop that ended before the stop died: say so loudly and stop, so the process is replaced."""
        if self._stopping.is_set():
            return
        for task in tasks:
            if not task.done():
                continue
            exc = None if task.cancelled() else task.exception()
            self.died = f"the consumer's {task.get_name()} loop ended: {exc!r}"
            log.critical("%s; this consumer stops and exits so its pool replaces it", self.died,
                         exc_info=exc, extra={"queue": self.priority, "consumer": self.name})
            self.stop()
            return

    def stop(self) -> None:
        self._stopping.set()
        self._slot_free.set()

    async def _until_ready(self) -> bool:
        """Until the group exists (True), or ``stop()`` came first (False)."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.client.ensure_group(self.priority)
                return True
            except UNAVAILABLE_ERRORS as exc:
                failures += 1
                await self._pause_after(failures, "connect", exc)
        return False

    async def _pause_after(self, failures: int, what: str, exc: BaseException) -> None:
        """Back off after the ``failures``-th Redis error in a row (0.1 s doubling to 5 s, with jitter)."""
        delay = backoff_delay(min(failures, 7), BACKOFF_FIRST, BACKOFF_MAX)
        if failures <= 3 or failures % 20 == 0:
            log.warning("Redis %s failed (%d in a row): %s; retrying in %.1fs", what, failures, exc, delay,
                        extra={"queue": self.priority})
        # A stop ends the pause: SIGTERM is honoured at once, even while Redis is down.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _leave(self) -> None:
        """Drop this consumer from the group when it holds nothing, and its heartbeat."""
        pending = await self.redis.xpending_range(self.keys.stream, GROUP, "-", "+", 1, consumername=self.name)
        if not pending:
            await self.redis.xgroup_delconsumer(self.keys.stream, GROUP, self.name)
        await self.redis.zrem(self.keys.consumers, self.name)

    # -- reading ---------------------------------------------------------------

    async def _read_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self.concurrency - len(self.running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            if free < self.concurrency // 2 and not self._gathered:
                # Short jobs free their slots one by one: wait a moment so that one
                # read fetches a batch instead of paying a round trip per job.
                self._gathered = True
                await asyncio.sleep(self.read_gather)
                continue
            self._gathered = False
            try:
                if await self._paused():
                    await asyncio.sleep(PAUSE_CHECK_EVERY)
                    continue
                if self.held:  # resumed: what a read brought in while the queue was paused starts now
                    held = dict(self.held)
                    self.held.clear()
                    for entry_id, fields in held.items():
                        self._accept(entry_id, fields)
                    continue
                # Entries waiting: take them at once, the pause flag just read by _paused() covers them.
                reply = await self.redis.xreadgroup(GROUP, self.name, {self.keys.stream: ">"}, count=free)
                paused = False
                if not reply:
                    # None: wait for one. The pause flag travels with a blocking read (same round trip, read
                    # after it unblocks): a read blocked when an operator paused the queue must not start
                    # what it brings in.
                    async with self.redis.pipeline(transaction=False) as pipe:
                        pipe.xreadgroup(GROUP, self.name, {self.keys.stream: ">"}, count=free, block=BLOCK_MS)
                        pipe.exists(self.keys.paused)
                        reply, paused = await pipe.execute()
                    self._pause_seen = (time.monotonic(), bool(paused))
                failures = 0
                if reply and paused:
                    # Paused while the read was blocked: keep the entries (pending, ours) until resumed.
                    self.held.update(entry for _stream, entries in reply for entry in entries)
                    continue
            except UNAVAILABLE_ERRORS as exc:
                failures += 1
                await self._pause_after(failures, "read", exc)
                continue
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.client.ensure_group(self.priority)
                continue
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._accept(entry_id, fields)

    async def _paused(self) -> bool:
        """Whether an operator paused this queue (`cluster queues pause`); read at most every half second.

        A paused queue takes no new entries; the jobs in hand finish and delayed jobs still come due.
        """
        checked_at, paused = self._pause_seen
        now = time.monotonic()
        if now - checked_at >= PAUSE_CHECK_EVERY:
            paused = bool(await self.redis.exists(self.keys.paused))
            self._pause_seen = (now, paused)
        return paused

    # -- running ---------------------------------------------------------------

    def _accept(self, entry_id: str, fields: dict[str, str] | None) -> None:
        """Start one delivered entry, or send it to the dead letter with whatever stops it from starting."""
        envelope = self.acks.decoded(entry_id, fields)
        if envelope is None:
            return
        try:
            spec = registry.get(envelope.name)
            timeout = spec.timeout or self.timeout
            job = Running(envelope, spec, timeout, time.monotonic(), time.time())
            job.task = asyncio.create_task(self._run(entry_id, job))
        except Exception as exc:
            self.acks.record(Failure(entry_id, f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                                     envelope=envelope, reason="unknown job" if isinstance(exc, registry.UnknownJob)
                                     else "cannot start"))
            return
        self.running[entry_id] = job
        self.acks.started(entry_id, envelope.id, job.started_at)
        job.task.add_done_callback(lambda _t: self._release(entry_id))

    def _release(self, entry_id: str) -> None:
        self.running.pop(entry_id, None)
        self._slot_free.set()

    async def _run(self, entry_id: str, job: Running) -> None:
        envelope = job.envelope
        request_id_var.set(envelope.request_id)
        read_your_writes_var.set(envelope.read_your_writes)
        set_current(self._context(envelope))
        started = time.perf_counter()
        try:
            result = await self.runner.run(job.spec, envelope.args, envelope.kwargs, job.timeout)
        except HungHandler as exc:
            await self.guard.die_for(Failure(entry_id, f"JobTimeout: {exc}", envelope=envelope, reason="timeout"))
        except JobTimeout as exc:
            self.acks.record(Failure(entry_id, f"JobTimeout: {exc}", envelope=envelope, reason="timeout"))
        except Exception as exc:
            self.acks.record(Failure(entry_id, f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                                     envelope=envelope))
        else:
            try:
                payload = json.dumps(result, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                # The handler did its work (and its side effects): running it again would repeat them.
                self.acks.record(Failure(entry_id, f"result is not JSON: {exc}", envelope=envelope,
                                         reason="result is not JSON"))
            else:
                self.acks.succeeded(entry_id, envelope, payload)
        finally:
            self._duration.observe(time.perf_counter() - started)

    def _context(self, envelope: Envelope) -> JobContext:
        return JobContext(
            id=envelope.id, name=envelope.name, priority=envelope.priority, attempt=envelope.attempt,
            max_retries=envelope.max_retries, request_id=envelope.request_id,
            settings=self.settings, redis=self.client.shared, db=self.db,
        )
