"""A consumer's outcomes, sent to Redis in batches: the jobs done, the failures, the running mark of long jobs.

Outcomes gather for ``queues.ack_gather`` seconds, then one flush sends them all: the happy path is one
call of the ACK_DONE script (atomic by itself); with failures, that call and the failures' writes go in
one MULTI/EXEC. A flush that fails keeps its outcomes for the next try.

Acknowledged entries are deleted (XACK then XDEL in the same transaction) rather than trimmed with XTRIM
MINID: acks arrive out of order under concurrency, so the oldest unacknowledged id would need an XPENDING
scan per trim, and a MINID trim races with a reclaim. XDEL keeps XLEN exactly "ready + in flight", which
is what the enqueue script's size check reads; the stream's radix tree frees a node once all its entries
are deleted, and since deletions follow delivery order, the nodes empty and go.

A job is marked ``running`` in its hash only once it has run ``queues.running_mark_after`` seconds: most
jobs are done by then, and marking them costs a hash write and an expiry each, a third of what a short
job costs Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from redis import Redis as SyncRedis
from redis.client import Pipeline

from cluster.queues import metrics
from cluster.queues.enqueue_plan import QUEUED_JOB_TTL
from cluster.queues.connection import UNAVAILABLE_ERRORS
from cluster.queues.envelope import FIELD, Envelope, decode
from cluster.queues.failures import TRACEBACK_MAX, Failure, decide, queue_writes
from cluster.queues.in_hand import Hand
from cluster.queues.keys import GROUP
from cluster.queues.scripts import ACK_DONE

log = logging.getLogger("queues.consumer")

Start = tuple[str, str, float]
"""A job's start: (entry id, job id, wall clock time)."""

Backoff = Callable[[int, str, BaseException], Awaitable[None]]
"""Waits after the n-th Redis error in a row of an operation (the consumer's, which a stop cuts short)."""


def split_starts(starts: Sequence[Start], started: Mapping[str, float], now: float,
                 mark_after: float) -> tuple[list[Start], list[Start], float | None]:
    """The ``starts`` of jobs still running (``started``: entry id -> monotonic start) as (due, young, wait).

    Due jobs have run ``mark_after`` seconds and get their running mark now; young ones get it later, the
    first of them in ``wait`` seconds (None: no young job); finished jobs skip the running state.
    """
    due: list[Start] = []
    young: list[Start] = []
    wait: float | None = None
    for start in starts:
        began = started.get(start[0])
        if began is None:
            continue
        if now - began >= mark_after:
            due.append(start)
        else:
            young.append(start)
            if wait is None:
                wait = mark_after - (now - began)
    return due, young, wait


class Acks:
    """Collects a consumer's outcomes and flushes them; ``loop()`` is the flush loop."""

    def __init__(self, hand: Hand) -> None:
        self.hand = hand
        #: How long (s) outcomes gather before a flush (``queues.ack_gather``): one flush then acks many jobs.
        self.gather = hand.settings.queues.ack_gather
        #: A job still running this long (s) gets its running mark (``queues.running_mark_after``).
        self.mark_after = hand.settings.queues.running_mark_after
        self.done: list[Any] = []  # flat (entry id, job id, attempt, result JSON) for ACK_DONE
        self.failures: list[Failure] = []
        self.starts: list[Start] = []  # jobs not yet marked running
        self.needed = asyncio.Event()
        self._lock = asyncio.Lock()  # one flush at a time: a dying consumer's last one waits for the one in flight
        self._mark_timer: asyncio.TimerHandle | None = None
        self._ack = hand.redis.register_script(ACK_DONE)
        self._m = {name: counter.labels(hand.priority) for name, counter in (
            ("processed", metrics.PROCESSED), ("failed", metrics.FAILED),
            ("retried", metrics.RETRIED), ("dead", metrics.DEAD), ("rerun", metrics.RERUN))}

    # -- what the consumer reports ------------------------------------------------

    def started(self, entry_id: str, job_id: str, at: float) -> None:
        """A job started at wall clock time ``at``: mark it running if it is still running a while from now."""
        self.starts.append((entry_id, job_id, at))
        self._mark_running_in(self.mark_after)

    def succeeded(self, entry_id: str, envelope: Envelope, result_json: str) -> None:
        self.done.extend((entry_id, envelope.id, envelope.attempt, result_json))
        self._m["processed"].inc()
        self.needed.set()

    def record(self, failure: Failure) -> None:
        """Classify a failure and queue it for the next flush."""
        self.classify(failure)
        self.failures.append(failure)
        self.needed.set()

    def classify(self, failure: Failure) -> None:
        """Decide the failure's outcome; count and log it."""
        decide(failure)
        envelope = failure.envelope
        if failure.ran:
            self._m["failed"].inc()
        job_id = envelope.id if envelope else failure.entry_id
        extra = {"queue": self.hand.priority, "job_id": job_id, "reason": failure.reason}
        if failure.outcome == "requeue":
            self._m["rerun"].inc()
            assert envelope is not None  # a requeue is a crash of a decoded job
            log.warning("job %s (%s) runs again at once: %s", job_id, envelope.name, failure.error, extra=extra)
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

    def decoded(self, entry_id: str, fields: dict[str, str] | None) -> Envelope | None:
        """The entry's envelope; None when it cannot be decoded (it is then on its way to the dead letter)."""
        try:
            return decode(fields or {})
        except Exception as exc:  # RecursionError, MemoryError...: any of them must not kill a loop
            try:
                raw = (fields or {}).get(FIELD) or json.dumps(fields)
            except Exception:
                raw = repr(fields)[:TRACEBACK_MAX]
            self.record(Failure(entry_id, f"undecodable payload: {type(exc).__name__}: {exc}"[:TRACEBACK_MAX],
                                raw=raw, reason="undecodable"))
            return None

    # -- flushing ----------------------------------------------------------------

    async def loop(self, stopping: asyncio.Event, backoff: Backoff) -> None:
        """Flush whenever outcomes wait; ends once ``stopping`` is set and no job is in hand."""
        failures = 0
        while True:
            await self.needed.wait()
            self.needed.clear()
            if stopping.is_set() and not self.hand.running:
                return
            # Let the outcomes of a moment gather: one flush then acks many jobs.
            await asyncio.sleep(self.gather)
            try:
                await self.flush()
                failures = 0
            except UNAVAILABLE_ERRORS as exc:
                failures += 1
                await backoff(failures, "ack flush", exc)
                self.needed.set()

    async def flush(self) -> None:
        """Send every finished outcome (and the start of jobs still running) in one transaction;
        on a Redis error keep them for the next try."""
        async with self._lock:
            await self._flush_now()

    async def _flush_now(self) -> None:
        done, failures, starts = self.done, self.failures, self.starts
        self.done, self.failures = [], []
        began = {start[0]: job.started for start in starts if (job := self.hand.running.get(start[0]))}
        due, self.starts, wait = split_starts(starts, began, time.monotonic(), self.mark_after)
        if wait is not None:
            self._mark_running_in(wait)
        if not done and not failures and not due:
            return
        running = [(job_id, at) for _entry_id, job_id, at in due]
        keys = self.hand.keys
        stream_keys = [keys.stream, keys.stats]
        try:
            if not failures:  # the common case: one script call, atomic by itself
                await self._ack(keys=stream_keys, args=self.ack_args(done, running))
                return
            async with self.hand.redis.pipeline(transaction=True) as pipe:
                await self._ack(keys=stream_keys, client=pipe, args=self.ack_args(done, running))
                now = time.time()
                for failure in failures:
                    queue_writes(pipe, failure, keys, self.hand.settings.queues, now)
                await pipe.execute()
        except BaseException:
            self.done[:0], self.failures[:0], self.starts[:0] = done, failures, due
            raise

    def queue_sync(self, client: SyncRedis, pipe: Pipeline, failures: list[Failure]) -> None:
        """Add what is done and ``failures`` to ``pipe``, a transaction of ``client``, a synchronous client of
        another thread's own (the loop watchdog's, while the loop is blocked)."""
        if self.done:
            client.register_script(ACK_DONE)(keys=[self.hand.keys.stream, self.hand.keys.stats],
                                             args=self.ack_args(list(self.done)), client=pipe)
        now = time.time()
        for failure in failures:
            queue_writes(pipe, failure, self.hand.keys, self.hand.settings.queues, now)

    def ack_args(self, done: list[Any], running: Sequence[tuple[str, float]] = ()) -> list[Any]:
        """ACK_DONE's arguments: ``done`` acknowledged, the jobs ``running`` (job id, start) marked running."""
        hand = self.hand
        return [GROUP, hand.keys.job_prefix, int(hand.settings.queues.result_ttl), time.time(), hand.name,
                QUEUED_JOB_TTL, len(running), *(item for start in running for item in start), *done]

    def _mark_running_in(self, delay: float) -> None:
        """Have a flush mark the jobs started by then as running, ``delay`` from now (one timer at a time)."""
        if self._mark_timer is None:
            self._mark_timer = asyncio.get_running_loop().call_later(delay, self._mark_due)

    def _mark_due(self) -> None:
        self._mark_timer = None
        self.needed.set()
