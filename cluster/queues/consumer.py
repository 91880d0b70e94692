"""The consumer: one asyncio loop that drains one queue with bounded concurrency.

Reads come in batches (XREADGROUP COUNT = free slots), acknowledgements go
out in batches (one MULTI/EXEC per flush, the happy path in one Lua call),
and no process is forked per job. Besides its jobs, every consumer moves due
delayed jobs onto the queue, refreshes the queue gauges and its heartbeat,
takes its turn as the queue's reaper (a Redis lock makes it one at a time),
and claims at once, by name, the jobs of any consumer of this host that died.

Nothing ends a consumer silently: an entry that cannot be decoded or
started goes to the dead letter stream with the exception as its reason; a
loop that ends on an exception stops the consumer (logged) and the process
exits non-zero, so its pool replaces it; a job that outlives its timeout
plus ``kill_grace`` (it ignored its cancellation, or it blocks the event
loop) is dead-lettered by name and the consumer kills itself, its other
jobs rerunning at once without penalty.

Acknowledged entries are deleted (XACK then XDEL in the same transaction)
rather than trimmed with XTRIM MINID: acks arrive out of order under
concurrency, so the oldest unacknowledged id would need an XPENDING scan
per trim, and a MINID trim races with a reclaim. XDEL keeps XLEN exactly
"ready + in flight", which is what the enqueue script's size check reads;
the stream's radix tree frees a node once all its entries are deleted,
and since deletions follow delivery order, the nodes empty and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
from redis.exceptions import ResponseError

from cluster.config import Settings
from cluster.observability.context import read_your_writes_var, request_id_var
from cluster.queues import identity, metrics, registry
from cluster.queues.client import QUEUED_JOB_TTL, QueueClient
from cluster.queues.connection import UNAVAILABLE_ERRORS, sync_client
from cluster.queues.context import JobContext, set_current
from cluster.queues.envelope import FIELD, Envelope, decode
from cluster.queues.execute import HandlerRunner, HungHandler, JobTimeout
from cluster.queues.failures import TRACEBACK_MAX, Failure, decide, queue_writes
from cluster.queues.keys import GROUP, QueueKeys
from cluster.queues.policy import backoff_delay, lease_seconds, reap_interval
from cluster.queues.scripts import ACK_DONE, CLAIM_CONSUMER, MOVE_DUE
from cluster.queues.watchdog import LoopWatchdog
from cluster.db import Router

log = logging.getLogger("queues.consumer")
BLOCK_MS = 1000
READ_GATHER = 0.002
FLUSH_GATHER = 0.002
MOVE_EVERY = 0.5
MOVE_BATCH = 500
GAUGES_EVERY = 2.0
RECLAIM_EVERY = 0.5
CLAIM_BATCH = 500
WATCH_EVERY = 0.25
WATCH_IDLE_EVERY = 1.0
RUNNING_MARK_AFTER = 0.5
"""A job is marked ``running`` in its hash once it has run this long (s): most jobs are done by then, and
marking them costs a hash write and an expiry each, a third of what a short job costs Redis."""
DYING_FLUSH_TIMEOUT = 5.0
PLANNED_EXIT_TTL = 600


class ConsumerDied(RuntimeError):
    """One of the consumer's loops ended on an exception; the process must be replaced."""
PAUSE_CHECK_EVERY = 0.5


Start = tuple[str, str, float]
"""A job's start: (entry id, job id, wall clock time)."""


@dataclass
class Running:
    """A job in hand: what runs, since when (monotonic and wall clock), under which timeout."""

    envelope: Envelope
    spec: registry.JobSpec
    timeout: float
    started: float
    started_at: float
    task: asyncio.Task[None] | None = field(default=None, repr=False)


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
        self.kill_grace = settings.queues.kill_grace
        own_timeouts = (s.timeout for s in registry.REGISTRY.values() if s.priority == priority)
        self.lease = lease_seconds(pool.timeout, own_timeouts, self.kill_grace)
        self.name = name or identity.consumer_name()
        self.local_prefix = identity.local_prefix()
        self.runner = HandlerRunner(pool.concurrency, self.kill_grace)
        self.running: dict[str, Running] = {}
        self.done: list[Any] = []  # flat (entry id, job id, attempt, result JSON) for ACK_DONE
        self.failures: list[Failure] = []
        self.starts: list[Start] = []  # jobs not yet marked running
        self._mark_timer: asyncio.TimerHandle | None = None
        self.died: str | None = None
        self._slot_free = asyncio.Event()
        self._gathered = False
        self._flush_needed = asyncio.Event()
        self._flush_lock = asyncio.Lock()  # one flush at a time: a dying consumer's last one waits for the one in flight
        self._stopping = asyncio.Event()
        self._dying = False
        self._ack = self.redis.register_script(ACK_DONE)
        self._move = self.redis.register_script(MOVE_DUE)
        self._claim = self.redis.register_script(CLAIM_CONSUMER)
        self._m = {name: counter.labels(priority) for name, counter in (
            ("processed", metrics.PROCESSED), ("failed", metrics.FAILED),
            ("retried", metrics.RETRIED), ("dead", metrics.DEAD), ("rerun", metrics.RERUN))}
        self._duration = metrics.DURATION.labels(priority)
        self.watchdog = LoopWatchdog(self._on_loop_blocked, metrics.LOOP_LAG.labels(priority),
                                     busy=lambda: bool(self.running))
        self._pause_seen = (0.0, False)
        # Entries a blocked read delivered after an operator paused the queue: pending on this
        # consumer, in hand like running jobs (lease renewed, never reaped), started on resume.
        self._held: dict[str, dict[str, str]] = {}

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Consume until ``stop()``; then finish the jobs in hand and flush their acks.

        Raises ConsumerDied (after that same orderly stop) when one of its loops died.
        """
        if not await self._until_ready():
            return  # stopped while Redis was unreachable: nothing was taken
        log.info("consumer started", extra={"queue": self.priority, "consumer": self.name,
                                            "concurrency": self.concurrency, "lease": self.lease})
        guards = [asyncio.create_task(self.watchdog.tick(), name="loop-lag"),
                  asyncio.create_task(self._watch_loop(), name="watch")]
        loops = [asyncio.create_task(self._read_loop(), name="read"),
                 asyncio.create_task(self._flush_loop(), name="flush"),
                 asyncio.create_task(self._upkeep_loop(), name="upkeep")]
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
        self._flush_needed.set()
        await asyncio.gather(flusher, return_exceptions=True)
        try:
            await self._flush()
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
        held, self._held = self._held, {}
        for entry_id, fields in held.items():
            self._take_back(entry_id, fields, "its consumer stopped while the queue was paused", penalty=False)

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
        delay = backoff_delay(min(failures, 7), 0.1, 5.0)
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

    # -- reading and running ---------------------------------------------------

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
                await asyncio.sleep(READ_GATHER)
                continue
            self._gathered = False
            try:
                if await self._paused():
                    await asyncio.sleep(PAUSE_CHECK_EVERY)
                    continue
                if self._held:  # resumed: what a read brought in while the queue was paused starts now
                    held, self._held = self._held, {}
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
                    self._held.update(entry for _stream, entries in reply for entry in entries)
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

    def _accept(self, entry_id: str, fields: dict[str, str] | None) -> None:
        """Start one delivered entry, or send it to the dead letter with whatever stops it from starting."""
        envelope = self._decoded(entry_id, fields)
        if envelope is None:
            return
        try:
            spec = registry.get(envelope.name)
            timeout = spec.timeout or self.timeout
            job = Running(envelope, spec, timeout, time.monotonic(), time.time())
            job.task = asyncio.create_task(self._run(entry_id, job))
        except Exception as exc:
            self._record(Failure(entry_id, f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                                 envelope=envelope, reason="unknown job" if isinstance(exc, registry.UnknownJob)
                                 else "cannot start"))
            return
        self.running[entry_id] = job
        self.starts.append((entry_id, envelope.id, job.started_at))
        self._mark_running_in(RUNNING_MARK_AFTER)
        job.task.add_done_callback(lambda _t: self._release(entry_id))

    def _decoded(self, entry_id: str, fields: dict[str, str] | None) -> Envelope | None:
        """The entry's envelope; None when it cannot be decoded (it is then on its way to the dead letter)."""
        try:
            return decode(fields or {})
        except Exception as exc:  # RecursionError, MemoryError...: any of them must not kill a loop
            try:
                raw = (fields or {}).get(FIELD) or json.dumps(fields)
            except Exception:
                raw = repr(fields)[:TRACEBACK_MAX]
            self._record(Failure(entry_id, f"undecodable payload: {type(exc).__name__}: {exc}"[:TRACEBACK_MAX],
                                 raw=raw, reason="undecodable"))
            return None

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
            await self._die_for(Failure(entry_id, f"JobTimeout: {exc}", envelope=envelope, reason="timeout"))
        except JobTimeout as exc:
            self._record(Failure(entry_id, f"JobTimeout: {exc}", envelope=envelope, reason="timeout"))
        except Exception as exc:
            self._record(Failure(entry_id, f"{type(exc).__name__}: {exc}", traceback.format_exc(), envelope=envelope))
        else:
            try:
                payload = json.dumps(result, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                # The handler did its work (and its side effects): running it again would repeat them.
                self._record(Failure(entry_id, f"result is not JSON: {exc}", envelope=envelope,
                                     reason="result is not JSON"))
            else:
                self.done.extend((entry_id, envelope.id, envelope.attempt, payload))
                self._m["processed"].inc()
                self._flush_needed.set()
        finally:
            self._duration.observe(time.perf_counter() - started)

    def _context(self, envelope: Envelope) -> JobContext:
        return JobContext(
            id=envelope.id, name=envelope.name, priority=envelope.priority, attempt=envelope.attempt,
            max_retries=envelope.max_retries, request_id=envelope.request_id,
            settings=self.settings, redis=self.client.shared, db=self.db,
        )

    # -- the watchdog: stuck and blocking jobs -----------------------------------

    async def _watch_loop(self) -> None:
        """Find async jobs still running ``kill_grace`` past their timeout: they ignored the cancellation."""
        while True:
            # idle, nothing can be overdue; a job that starts during the idle sleep is checked at most 1 s late
            await asyncio.sleep(WATCH_EVERY if self.running else WATCH_IDLE_EVERY)
            now = time.monotonic()
            for entry_id, job in list(self.running.items()):
                over = now - job.started - job.timeout
                if job.spec.is_async and over > self.kill_grace and job.task and not job.task.done():
                    await self._die_for(Failure(
                        entry_id, f"ignored cancellation: still running {over:.1f} s after its {job.timeout:g} s "
                        "timeout", envelope=job.envelope, reason="ignored cancellation"))

    def _on_loop_blocked(self, blocked: float) -> bool:
        """In the watchdog thread: the loop has not turned for ``blocked`` s. Kill us if a job over its
        deadline holds it; True when the process is going."""
        frame = self.watchdog.frame_locals_of(Consumer._run.__code__)
        entry_id = frame.get("entry_id") if frame else None
        job = self.running.get(entry_id) if isinstance(entry_id, str) else None
        if job is None or time.monotonic() - job.started - job.timeout <= self.kill_grace:
            return False
        failure = Failure(entry_id, f"blocked the event loop for {blocked:.1f} s (timeout {job.timeout:g} s)",
                          envelope=job.envelope, reason="blocked the event loop")
        self._classify(failure)
        self._announce_death(failure)
        try:
            self._flush_sync([failure])
        except Exception as exc:  # whatever happens, the process must go
            log.error("could not record the blocking job before the kill (%s); its entry is reclaimed", exc)
        os.kill(os.getpid(), signal.SIGKILL)
        return True

    def _announce_death(self, failure: Failure) -> None:
        envelope = failure.envelope
        assert envelope is not None
        log.critical("job %s (%s) %s; killing this consumer so its pool replaces it; its %d other job(s) "
                     "rerun at once", envelope.id, envelope.name, failure.error, len(self.running) - 1,
                     extra={"queue": self.priority, "job_id": envelope.id, "job": envelope.name,
                            "reason": failure.reason, "consumer": self.name})

    async def _die_for(self, failure: Failure) -> None:
        """A job is stuck past its grace: record its failure and everything done, then SIGKILL ourselves.

        Cooperative cancellation cannot stop it; a fresh process can. The
        planned-exit mark tells whoever claims our other jobs that they are
        not to blame.
        """
        if self._dying:
            return
        self._dying = True
        self._announce_death(failure)
        self._record(failure)
        try:
            async with asyncio.timeout(DYING_FLUSH_TIMEOUT):
                await self._flush()
                await self.redis.set(self.keys.planned_exit(self.name), failure.entry_id, ex=PLANNED_EXIT_TTL)
        except (TimeoutError, *UNAVAILABLE_ERRORS):
            log.error("could not flush before the kill; the jobs are reclaimed and rerun",
                      extra={"queue": self.priority})
        os.kill(os.getpid(), signal.SIGKILL)

    def _flush_sync(self, failures: list[Failure]) -> None:
        """From the watchdog thread while the loop is blocked: flush what is done, these failures and the
        planned-exit mark, with a client of its own."""
        client = sync_client(self.settings.redis.url or "", max_connections=1)
        try:
            pipe = client.pipeline(transaction=True)
            if self.done:
                client.register_script(ACK_DONE)(keys=[self.keys.stream, self.keys.stats],
                                                 args=self._ack_args(list(self.done)), client=pipe)
            now = time.time()
            for failure in failures:
                queue_writes(pipe, failure, self.keys, self.settings.queues, now)
            pipe.set(self.keys.planned_exit(self.name), failures[0].entry_id, ex=PLANNED_EXIT_TTL)
            pipe.execute()
        finally:
            client.close()

    # -- outcomes --------------------------------------------------------------

    def _classify(self, failure: Failure) -> None:
        """Decide the failure's outcome; count and log it."""
        decide(failure)
        envelope = failure.envelope
        if failure.ran:
            self._m["failed"].inc()
        job_id = envelope.id if envelope else failure.entry_id
        extra = {"queue": self.priority, "job_id": job_id, "reason": failure.reason}
        if failure.outcome == "requeue":
            self._m["rerun"].inc()
            log.warning("job %s (%s) runs again at once: %s", job_id, envelope.name, failure.error,  # type: ignore[union-attr]
                        extra=extra)
        elif failure.outcome == "retry":
            assert envelope is not None
            self._m["retried"].inc()
            log.warning("job %s (%s) attempt %d failed: %s; will retry", job_id, envelope.name,
                        envelope.attempt, failure.error, extra={**extra, "attempt": envelope.attempt})
        elif failure.outcome == "failed":
            log.error("job %s failed (%s): %s", job_id, failure.reason, failure.error, extra=extra)
        else:
            self._m["dead"].inc()
            log.error("job %s goes to the dead letter stream (%s): %s", job_id, failure.reason, failure.error,
                      extra=extra)

    def _record(self, failure: Failure) -> None:
        """Classify a failure and queue it for the next flush."""
        self._classify(failure)
        self.failures.append(failure)
        self._flush_needed.set()

    def _ack_args(self, done: list[Any], running: Sequence[tuple[str, float]] = ()) -> list[Any]:
        """ACK_DONE's arguments: ``done`` acknowledged, the jobs ``running`` (job id, start) marked running."""
        return [GROUP, self.keys.job_prefix, int(self.settings.queues.result_ttl), time.time(), self.name,
                QUEUED_JOB_TTL, len(running), *(item for start in running for item in start), *done]

    async def _flush(self) -> None:
        """Send every finished outcome (and the start of jobs still running) in one transaction;
        on a Redis error keep them for the next try."""
        async with self._flush_lock:
            await self._flush_now()

    def _mark_running_in(self, delay: float) -> None:
        """Have a flush mark the jobs started by then as running, ``delay`` from now (one timer at a time)."""
        if self._mark_timer is None:
            self._mark_timer = asyncio.get_running_loop().call_later(delay, self._mark_due)

    def _mark_due(self) -> None:
        self._mark_timer = None
        self._flush_needed.set()

    def _split_starts(self, starts: list[Start]) -> tuple[list[Start], list[Start]]:
        """``starts`` still running as (due, young): due have run RUNNING_MARK_AFTER and get their running
        mark now, young later (a timer is set for them); the finished ones skip the running state."""
        now = time.monotonic()
        due: list[Start] = []
        young: list[Start] = []
        for start in starts:
            job = self.running.get(start[0])
            if job is None:
                continue
            if now - job.started >= RUNNING_MARK_AFTER:
                due.append(start)
            else:
                young.append(start)
                self._mark_running_in(RUNNING_MARK_AFTER - (now - job.started))
        return due, young

    async def _flush_now(self) -> None:
        done, failures, starts = self.done, self.failures, self.starts
        self.done, self.failures = [], []
        due, self.starts = self._split_starts(starts)
        if not done and not failures and not due:
            return
        running = [(job_id, at) for _entry_id, job_id, at in due]
        stream_keys = [self.keys.stream, self.keys.stats]
        try:
            if not failures:  # the common case: one script call, atomic by itself
                await self._ack(keys=stream_keys, args=self._ack_args(done, running))
                return
            async with self.redis.pipeline(transaction=True) as pipe:
                await self._ack(keys=stream_keys, client=pipe, args=self._ack_args(done, running))
                now = time.time()
                for failure in failures:
                    queue_writes(pipe, failure, self.keys, self.settings.queues, now)
                await pipe.execute()
        except BaseException:
            self.done[:0], self.failures[:0], self.starts[:0] = done, failures, due
            raise

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self._flush_needed.wait()
            self._flush_needed.clear()
            if self._stopping.is_set() and not self.running:
                return
            # Let the outcomes of a moment gather: one flush then acks many jobs.
            await asyncio.sleep(FLUSH_GATHER)
            try:
                await self._flush()
                failures = 0
            except UNAVAILABLE_ERRORS as exc:
                failures += 1
                await self._pause_after(failures, "ack flush", exc)
                self._flush_needed.set()

    # -- upkeep: delayed jobs, gauges, heartbeat, reclaim, reaper ------------------

    async def _upkeep_loop(self) -> None:
        last_gauges = last_reap = last_reclaim = last_renew = 0.0
        reap_every = reap_interval(self.lease)
        while not self._stopping.is_set():
            try:
                await self.move_due()
                now = time.monotonic()
                if now - last_reclaim >= RECLAIM_EVERY:
                    last_reclaim = now
                    await self.reclaim_dead()
                if now - last_gauges >= GAUGES_EVERY:
                    last_gauges = now
                    await self._heartbeat()
                    self._check_memory()
                if now - last_renew >= self.lease / 3:
                    last_renew = now
                    await self._renew_leases()
                if now - last_reap >= reap_every:
                    last_reap = now
                    await self.reap(reap_every)
            except UNAVAILABLE_ERRORS as exc:
                log.debug("upkeep skipped: %s", exc)
            try:
                await asyncio.wait_for(self._stopping.wait(), MOVE_EVERY)
            except TimeoutError:
                pass

    async def move_due(self) -> int:
        """Move every due delayed job onto the stream; returns how many."""
        moved = 0
        while True:
            count = await self._move(keys=[self.keys.delayed, self.keys.stream],
                                     args=[int(time.time() * 1000), MOVE_BATCH, self.keys.job_prefix, FIELD])
            moved += count
            if count < MOVE_BATCH:
                return moved

    async def _heartbeat(self) -> None:
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.consumers, {self.name: now_ms})
            pipe.zremrangebyscore(self.keys.consumers, "-inf", now_ms - 600_000)
            await pipe.execute()
        metrics.set_queue_gauges(self.priority, await self.client.queue_status(self.priority))

    def _check_memory(self) -> None:
        """Over ``queues.max_rss_mb``: finish the jobs in hand and exit, so the pool starts a fresh process."""
        cap = self.settings.queues.max_rss_mb
        if cap is None or self._stopping.is_set():
            return
        rss_mb = psutil.Process().memory_info().rss / 2**20
        if rss_mb > cap:
            log.warning("consumer uses %.0f MB, over queues.max_rss_mb=%d: it finishes its %d job(s) and exits "
                        "so its pool replaces it", rss_mb, cap, len(self.running),
                        extra={"queue": self.priority, "consumer": self.name, "rss_mb": round(rss_mb)})
            self.stop()

    async def _renew_leases(self) -> None:
        """Reset the idle time of the jobs in hand whose own lease is longer than the queue's
        (sent here with a longer timeout than this queue's jobs), and of the held entries of a
        paused queue, so the reaper leaves them alone."""
        ids = [entry_id for entry_id, job in self.running.items()
               if lease_seconds(job.timeout, (), self.kill_grace) > self.lease]
        ids.extend(self._held)
        if ids:
            await self.redis.xclaim(self.keys.stream, GROUP, self.name, 0, ids, justid=True)

    async def reclaim_dead(self) -> int:
        """Claim, by name, the pending jobs of every consumer of this host that died; returns how many.

        The process is gone, so nothing else will acknowledge them: no need to
        wait for the lease. Consumers of other hosts are left to the reaper.
        """
        taken = 0
        for consumer in await self.redis.xinfo_consumers(self.keys.stream, GROUP):
            name = consumer["name"]
            pid = identity.local_pid(name, self.local_prefix)
            if name == self.name or pid is None or not identity.is_dead(pid):
                continue
            taken += await self._claim_from(name)
        return taken

    async def _claim_from(self, dead: str) -> int:
        planned = await self.redis.get(self.keys.planned_exit(dead))
        why = (f"its consumer {dead} was killed on purpose (a neighbour was stuck)" if planned
               else f"its consumer {dead} died")
        taken = 0
        while True:
            reply = await self._claim(keys=[self.keys.stream], args=[GROUP, dead, self.name, CLAIM_BATCH])
            for entry_id, flat in reply:
                fields = dict(zip(flat[::2], flat[1::2])) if flat else {}
                self._take_back(entry_id, fields, why, penalty=not planned)
            taken += len(reply)
            if len(reply) < CLAIM_BATCH:
                break
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xgroup_delconsumer(self.keys.stream, GROUP, dead)
            pipe.zrem(self.keys.consumers, dead)
            pipe.delete(self.keys.planned_exit(dead))
            await pipe.execute()
        if taken:
            log.warning("claimed %d job(s) of dead consumer %s", taken, dead,
                        extra={"queue": self.priority, "dead_consumer": dead, "jobs": taken})
        return taken

    def _take_back(self, entry_id: str, fields: dict[str, str], why: str, penalty: bool) -> None:
        """Put a job whose consumer died back on the queue: the same attempt; one more crash if
        it may be to blame (a job that keeps killing its consumers goes to the dead letter)."""
        envelope = self._decoded(entry_id, fields)
        if envelope is None:
            return
        crashes = envelope.crashes + (1 if penalty else 0)
        self._record(Failure(entry_id, why, envelope=envelope.after_crash(crashes), reason="crashed"))

    async def reap(self, hold: float) -> int:
        """If we hold (or win) the reaper lock: reclaim entries idle longer than the lease; returns how many.

        Only for deaths nobody saw (a consumer of another host, a frozen process).
        """
        lock = self.keys.reaper_lock
        hold_ms = int(hold * 2000)
        if not await self.redis.set(lock, self.name, nx=True, px=hold_ms):
            if await self.redis.get(lock) != self.name:
                return 0
            await self.redis.pexpire(lock, hold_ms)
        reclaimed, start = 0, "0-0"
        while True:
            reply = await self.redis.xautoclaim(self.keys.stream, GROUP, self.name,
                                                min_idle_time=int(self.lease * 1000), start_id=start, count=100)
            start, claimed = reply[0], reply[1]
            for entry_id, fields in claimed:
                if entry_id in self.running or entry_id in self._held:
                    continue
                self._take_back(entry_id, fields, f"no consumer acknowledged it for {self.lease:g} s", penalty=True)
                reclaimed += 1
            if start == "0-0":
                break
        await self._prune_consumers()
        return reclaimed

    async def _prune_consumers(self) -> None:
        """Forget group consumers that hold nothing and have been idle long: the group stays bounded."""
        idle_limit = max(600_000, int(self.lease * 10_000))
        for consumer in await self.redis.xinfo_consumers(self.keys.stream, GROUP):
            if consumer["name"] != self.name and consumer["pending"] == 0 and consumer["idle"] > idle_limit:
                await self.redis.xgroup_delconsumer(self.keys.stream, GROUP, consumer["name"])
