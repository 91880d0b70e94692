"""The consumer: one asyncio loop that drains one queue with bounded concurrency.

Reads come in batches (XREADGROUP COUNT = free slots), acknowledgements go
out in batches (one MULTI/EXEC per flush, the happy path in one Lua call),
and no process is forked per job. Besides its jobs, every consumer moves due
delayed jobs onto the queue, refreshes the queue gauges and its heartbeat,
and takes its turn as the queue's reaper (a Redis lock makes it one at a time).

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
import json
import logging
import os
import signal
import socket
import time
import traceback
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from config import Settings
from observability.context import read_your_writes_var, request_id_var
from queues import metrics, registry
from queues.client import QUEUED_JOB_TTL, QueueClient
from queues.connection import UNAVAILABLE_ERRORS
from queues.context import JobContext, set_current
from queues.envelope import FIELD, DecodeError, Envelope, decode
from queues.execute import HandlerRunner, HungHandler, JobTimeout
from queues.keys import GROUP, QueueKeys
from queues.policy import backoff_delay, lease_seconds, reap_interval, should_retry
from queues.scripts import ACK_DONE, MOVE_DUE
from db import Router

log = logging.getLogger("queues.consumer")
BLOCK_MS = 1000
READ_GATHER = 0.002
FLUSH_GATHER = 0.002
MOVE_EVERY = 0.2
MOVE_BATCH = 500
GAUGES_EVERY = 2.0
DEAD_MAX = 10_000
TRACEBACK_MAX = 8000
RETRYABLE = ("failed", "timeout", "lost")


@dataclass
class Failure:
    """A run that did not succeed (or an entry that cannot run), waiting to be flushed."""

    entry_id: str
    error: str
    traceback: str
    envelope: Envelope | None = None
    raw: str | None = None
    reason: str = "failed"
    ran: bool = False
    retry: bool = False


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
        self.lease = lease_seconds(pool.timeout, (s.timeout for s in registry.REGISTRY.values()),
                                   settings.queues.kill_grace)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.runner = HandlerRunner(pool.concurrency, settings.queues.kill_grace)
        self.running: dict[str, asyncio.Task[None]] = {}
        self.done: list[Any] = []  # flat (entry id, job id, attempt, result JSON) for ACK_DONE
        self.failures: list[Failure] = []
        self._slot_free = asyncio.Event()
        self._gathered = False
        self._flush_needed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._ack = self.redis.register_script(ACK_DONE)
        self._move = self.redis.register_script(MOVE_DUE)
        self._m = {name: counter.labels(priority) for name, counter in (
            ("processed", metrics.PROCESSED), ("failed", metrics.FAILED),
            ("retried", metrics.RETRIED), ("dead", metrics.DEAD))}
        self._duration = metrics.DURATION.labels(priority)

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Consume until ``stop()``; then finish the jobs in hand and flush their acks."""
        await self._until_ready()
        log.info("consumer started", extra={"queue": self.priority, "consumer": self.name,
                                            "concurrency": self.concurrency, "lease": self.lease})
        reader = asyncio.create_task(self._read_loop(), name="read")
        flusher = asyncio.create_task(self._flush_loop(), name="flush")
        upkeep = asyncio.create_task(self._upkeep_loop(), name="upkeep")
        await self._stopping.wait()
        # The loops notice the stop themselves (a read blocks at most BLOCK_MS): cancelling
        # a task in the middle of a redis-py call can lose the cancellation.
        await asyncio.gather(reader, upkeep, return_exceptions=True)
        if self.running:
            await asyncio.gather(*self.running.values(), return_exceptions=True)
        self._flush_needed.set()
        await asyncio.gather(flusher, return_exceptions=True)
        try:
            await self._flush()
            await self._leave()
        except UNAVAILABLE_ERRORS as exc:
            log.warning("could not flush acks at stop (the jobs will run again): %s", exc)
        self.runner.shutdown()
        log.info("consumer stopped", extra={"queue": self.priority, "consumer": self.name})

    def stop(self) -> None:
        self._stopping.set()
        self._slot_free.set()

    async def _until_ready(self) -> None:
        failures = 0
        while True:
            try:
                await self.client.ensure_group(self.priority)
                return
            except UNAVAILABLE_ERRORS as exc:
                failures += 1
                await self._pause_after(failures, "connect", exc)

    async def _pause_after(self, failures: int, what: str, exc: BaseException) -> None:
        """Back off after the ``failures``-th Redis error in a row (0.1 s doubling to 5 s, with jitter)."""
        delay = backoff_delay(min(failures, 7), 0.1, 5.0)
        if failures <= 3 or failures % 20 == 0:
            log.warning("Redis %s failed (%d in a row): %s; retrying in %.1fs", what, failures, exc, delay,
                        extra={"queue": self.priority})
        await asyncio.sleep(delay)

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
                reply = await self.redis.xreadgroup(GROUP, self.name, {self.keys.stream: ">"},
                                                    count=free, block=BLOCK_MS)
                failures = 0
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

    def _accept(self, entry_id: str, fields: dict[str, str] | None, reclaimed: bool = False) -> None:
        """Start one delivered entry, or send it straight to failure handling."""
        try:
            envelope = decode(fields or {})
        except DecodeError as exc:
            raw = (fields or {}).get(FIELD) or json.dumps(fields)
            self._record(Failure(entry_id, f"undecodable payload: {exc}", "", raw=raw, reason="undecodable"))
            return
        if reclaimed:
            self._record(Failure(entry_id, f"lost: its consumer died (reclaimed after {self.lease:g}s)", "",
                                 envelope=envelope, reason="lost"))
            return
        try:
            spec = registry.get(envelope.name)
        except registry.UnknownJob as exc:
            self._record(Failure(entry_id, str(exc), "", envelope=envelope, reason="unknown job"))
            return
        task = asyncio.create_task(self._run(entry_id, envelope, spec))
        self.running[entry_id] = task
        task.add_done_callback(lambda _t: self._release(entry_id))

    def _release(self, entry_id: str) -> None:
        self.running.pop(entry_id, None)
        self._slot_free.set()

    async def _run(self, entry_id: str, envelope: Envelope, spec: registry.JobSpec) -> None:
        request_id_var.set(envelope.request_id)
        read_your_writes_var.set(envelope.read_your_writes)
        set_current(self._context(envelope))
        timeout = spec.timeout or self.timeout
        started = time.perf_counter()
        try:
            result = await self.runner.run(spec, envelope.args, envelope.kwargs, timeout)
        except HungHandler as exc:
            self._record(Failure(entry_id, f"JobTimeout: {exc}", "", envelope=envelope, reason="timeout"))
            await self._die_for(envelope)
        except JobTimeout as exc:
            self._record(Failure(entry_id, f"JobTimeout: {exc}", "", envelope=envelope, reason="timeout"))
        except Exception as exc:
            self._record(Failure(entry_id, f"{type(exc).__name__}: {exc}", traceback.format_exc(), envelope=envelope))
        else:
            self._succeeded(entry_id, envelope, result)
        finally:
            self._duration.observe(time.perf_counter() - started)

    def _succeeded(self, entry_id: str, envelope: Envelope, result: Any) -> None:
        """Queue the ack with the result, or fail the job when its result cannot be stored as JSON."""
        try:
            payload = json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:  # what json.dumps raises for what it cannot encode
            self._record(Failure(entry_id, f"result is not JSON: {exc}", traceback.format_exc(), envelope=envelope))
            return
        self.done.extend((entry_id, envelope.id, envelope.attempt, payload))
        self._m["processed"].inc()
        self._flush_needed.set()

    def _context(self, envelope: Envelope) -> JobContext:
        return JobContext(
            id=envelope.id, name=envelope.name, priority=envelope.priority, attempt=envelope.attempt,
            max_retries=envelope.max_retries, request_id=envelope.request_id,
            settings=self.settings, redis=self.redis, db=self.db,
        )

    async def _die_for(self, envelope: Envelope) -> None:
        """A sync handler is stuck past its grace: record everything we can, then SIGKILL ourselves."""
        log.critical(
            "job %s (%s) ignored its timeout; killing this consumer so the supervisor replaces it",
            envelope.id, envelope.name, extra={"queue": self.priority, "job_id": envelope.id},
        )
        try:
            await asyncio.wait_for(self._flush(), 5.0)
        except (TimeoutError, *UNAVAILABLE_ERRORS):
            log.error("could not flush before the kill; the reaper will reclaim the jobs")
        os.kill(os.getpid(), signal.SIGKILL)

    # -- outcomes --------------------------------------------------------------

    def _record(self, failure: Failure) -> None:
        """Count and log a failure and queue it for the next flush (retry or dead letter)."""
        envelope = failure.envelope
        failure.ran = envelope is not None and failure.reason in RETRYABLE
        failure.retry = failure.ran and should_retry(envelope.attempt, envelope.max_retries)  # type: ignore[union-attr]
        if failure.ran:
            self._m["failed"].inc()
        if failure.retry:
            assert envelope is not None
            self._m["retried"].inc()
            log.warning("job %s (%s) attempt %d failed: %s; will retry", envelope.id, envelope.name,
                        envelope.attempt, failure.error,
                        extra={"queue": self.priority, "job_id": envelope.id, "attempt": envelope.attempt})
        else:
            if failure.reason == "failed":
                failure.reason = "retries exhausted"
            self._m["dead"].inc()
            log.error("job %s goes to the dead letter stream (%s): %s",
                      envelope.id if envelope else failure.entry_id, failure.reason, failure.error,
                      extra={"queue": self.priority, "reason": failure.reason})
        self.failures.append(failure)
        self._flush_needed.set()

    def _queue_failure(self, pipe: Any, failure: Failure, now: float) -> None:
        keys, envelope = self.keys, failure.envelope
        if failure.ran:
            pipe.hincrby(keys.stats, "failed", 1)
        if failure.retry:
            assert envelope is not None
            due = now + backoff_delay(envelope.attempt, self.settings.queues.backoff_base,
                                      self.settings.queues.backoff_max)
            following = envelope.next_attempt(due)
            job_key = keys.job(envelope.id)
            pipe.hset(job_key, mapping={"state": "retrying", "envelope": following.encode(),
                                        "attempts": envelope.attempt, "error": failure.error})
            pipe.expire(job_key, QUEUED_JOB_TTL)
            pipe.zadd(keys.delayed, {envelope.id: int(due * 1000)})
            pipe.hincrby(keys.stats, "retried", 1)
        else:
            pipe.xadd(keys.dead, {
                FIELD: failure.raw if envelope is None else envelope.encode(),
                "job_id": envelope.id if envelope else "",
                "name": envelope.name if envelope else "",
                "reason": failure.reason,
                "error": failure.error,
                "traceback": failure.traceback[-TRACEBACK_MAX:],
                "attempts": envelope.attempt if envelope else 0,
                "failed_at": now,
            }, maxlen=DEAD_MAX, approximate=True)
            pipe.hincrby(keys.stats, "dead", 1)
            if envelope is not None:
                job_key = keys.job(envelope.id)
                pipe.hset(job_key, mapping={"state": "dead", "attempts": envelope.attempt,
                                            "error": failure.error, "finished_at": now})
                pipe.expire(job_key, int(self.settings.queues.result_ttl))
        pipe.xack(keys.stream, GROUP, failure.entry_id)
        pipe.xdel(keys.stream, failure.entry_id)

    async def _flush(self) -> None:
        """Send every finished outcome in one transaction; on a Redis error keep them for the next try."""
        done, failures = self.done, self.failures
        if not done and not failures:
            return
        self.done, self.failures = [], []
        now = time.time()
        ack_args = [GROUP, self.keys.job_prefix, int(self.settings.queues.result_ttl), now, *done]
        try:
            if not failures:  # the common case: one script call, atomic by itself
                await self._ack(keys=[self.keys.stream, self.keys.stats], args=ack_args)
                return
            async with self.redis.pipeline(transaction=True) as pipe:
                if done:
                    await self._ack(keys=[self.keys.stream, self.keys.stats], client=pipe, args=ack_args)
                for failure in failures:
                    self._queue_failure(pipe, failure, now)
                await pipe.execute()
        except BaseException:
            self.done[:0], self.failures[:0] = done, failures
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

    # -- upkeep: delayed jobs, gauges, heartbeat, reaper -------------------------

    async def _upkeep_loop(self) -> None:
        last_gauges = last_reap = 0.0
        reap_every = reap_interval(self.lease)
        while not self._stopping.is_set():
            try:
                await self.move_due()
                now = time.monotonic()
                if now - last_gauges >= GAUGES_EVERY:
                    last_gauges = now
                    await self._heartbeat()
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

    async def reap(self, hold: float) -> int:
        """If we hold (or win) the reaper lock: reclaim entries idle longer than the lease; returns how many."""
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
                if entry_id in self.running:
                    continue
                log.warning("reclaimed job entry %s from a dead consumer", entry_id, extra={"queue": self.priority})
                self._accept(entry_id, fields, reclaimed=True)
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
