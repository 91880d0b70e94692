"""The enqueue transports: ``QueueClient`` (asyncio) and ``SyncQueueClient`` send what ``enqueue_plan`` works out.

What one enqueue writes is decided in ``enqueue_plan`` (no I/O); here it is
only sent. Three paths carry an enqueue, each for a reason measured with
``scripts/bench/enqueue``:

1. **The lane** (``QueueClient._lane_call``): a single enqueue with no WAIT
   writes its EVALSHA on one held connection and reads the reply there.
   redis-py's command path (pool checkout, retry wrapper, instrumentation)
   costs the client more CPU than the round trip itself; one caller at a time
   (a job enqueueing its follow-up, a request handler) is the common case.
2. **The shared connection** (``MultiplexedRedis``, ``QueueClient.shared``): a
   single enqueue that finds the lane busy (another coroutine is on it) or that
   the lane failed (NOSCRIPT, a lost connection) goes on the process's pipelined
   connection: a reader task in between makes it dearer for one caller, far
   cheaper for many at once, and the script object there reloads the script on
   NOSCRIPT. A resend after a lost connection is safe: the job's id finds the
   job if the first send landed (an existing id adds nothing).
3. **A pipeline** (``_queue_calls``/``_take``): a batch (``enqueue_many``), or any
   enqueue when ``redis.wait_replicas`` asks for a WAIT after the write: all
   script calls and the WAIT in one round trip; calls that met NOSCRIPT did not
   run and are sent once more after SCRIPT LOAD.

``SyncQueueClient`` has no event loop to share a connection in: its single
enqueue is the redis-py script object (path 2's role), its batches path 3.
The read and admin side (job lookup, status, dead letter) is ``admin.QueueAdmin``,
which ``QueueClient`` extends so one handle serves both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from cluster.config import PRIORITIES, Settings
from cluster.config.masking import mask_url
from cluster.observability.context import read_your_writes_var, request_id_var
from cluster.queues import metrics
from cluster.queues.admin import QueueAdmin
from cluster.queues.connection import UNAVAILABLE_ERRORS, QueueUnavailable, async_client, sync_client
from cluster.queues.enqueue_plan import (BatchOutcome, Enqueued, EnqueuePlan, EnqueueUnknown, JobRequest, QueueFull,
                                         ScriptCall, single)
from cluster.queues.envelope import request_context
from cluster.queues.multiplexed import MultiplexedRedis
from cluster.queues.scripts import ENQUEUE

# The outcome types live in enqueue_plan; callers that import them from here (before the split, their home) still can.
__all__ = ["ENQUEUE_TIMEOUT", "BatchOutcome", "EnqueueUnknown", "Enqueued", "JobRequest", "QueueClient", "QueueFull",
           "SyncQueueClient"]

#: The longest an enqueue waits for Redis before answering "unknown" (the sync client: per try, a quarter).
ENQUEUE_TIMEOUT = 5.0


def _plan(settings: Settings) -> EnqueuePlan:
    """The plan of one client, counting the jobs it adds on ``cluster_jobs_enqueued_total``."""
    counters = {p: metrics.ENQUEUED.labels(p) for p in PRIORITIES}
    return EnqueuePlan(settings, lambda priority, n: counters[priority].inc(n))


def _context() -> str:
    """The request context the envelope carries (request id, read-your-writes marks) of the current task."""
    return request_context(request_id_var.get(), read_your_writes_var.get())


def _wait_args(settings: Settings) -> tuple[int, int]:
    return settings.redis.wait_replicas, int(settings.redis.wait_timeout * 1000)


def _queue_calls(pipe: Any, sha: str, calls: list[ScriptCall], todo: list[int], wait: tuple[int, int] | None) -> None:
    """Add to ``pipe`` the script calls ``todo`` (indexes into ``calls``), then WAIT when ``wait`` is given."""
    for i in todo:
        pipe.evalsha(sha, len(calls[i].keys), *calls[i].keys, *calls[i].argv)
    if wait is not None:
        pipe.execute_command("WAIT", *wait)


def _take(replies: list[Any], todo: list[int], answers: list[Any], wait: bool) -> tuple[list[int], int | None]:
    """Put a pipeline's ``answers`` in ``replies``; the calls to send again (NOSCRIPT: they did not run)
    and the WAIT count."""
    replicas = answers.pop() if wait else None
    for i, answer in zip(todo, answers):
        replies[i] = answer
    return [i for i, answer in zip(todo, answers) if isinstance(answer, NoScriptError)], replicas


def _batch_unavailable(settings: Settings, exc: BaseException) -> QueueUnavailable:
    return QueueUnavailable(f"cannot enqueue a batch: Redis at {mask_url(settings.redis.url)} is unreachable ({exc})")


class QueueClient(QueueAdmin):
    """One process's handle on the four queues (asyncio): enqueue, and the reads of ``QueueAdmin``."""

    def __init__(self, settings: Settings, client: redis.asyncio.Redis | None = None) -> None:
        if not settings.redis.url and client is None:
            raise QueueUnavailable("the queue tier is off: no redis.url (REDIS_URL) and no embedded redis-server")
        super().__init__(settings, client or async_client(settings.redis.url or ""))
        self._enqueue = self.redis.register_script(ENQUEUE)
        self._plan = _plan(settings)
        # The lane and the shared connection: paths 1 and 2 of the module docstring.
        self._lane: redis.asyncio.Connection | None = None
        self._lane_busy = False
        self.shared = MultiplexedRedis(connection_pool=self.redis.connection_pool)
        """The process's short commands on one pipelined connection (also what jobs get as current_job().redis)."""
        self._enqueue_shared = self.shared.register_script(ENQUEUE)

    async def close(self) -> None:
        if self._lane is not None:
            await self.redis.connection_pool.release(self._lane)
        await self.shared.aclose()
        await self.redis.aclose()

    async def enqueue(self, name: str, *args: Any, priority: str | None = None, delay: float | None = None,
                      at: float | None = None, job_id: str | None = None, **kwargs: Any) -> Enqueued:
        """Add a job; with an existing ``job_id`` nothing is added and the existing job is returned.

        Answers within ``ENQUEUE_TIMEOUT``: the job is enqueued (or existed), or
        EnqueueUnknown carries the job id to retry with. Raises UnknownJob,
        ValueError (bad arguments), QueueFull, EnqueueUnknown.
        """
        call = self._plan.one(name, args, kwargs, priority, delay, at, job_id, time.time(), _context())
        try:
            async with asyncio.timeout(ENQUEUE_TIMEOUT):
                replies, replicas = await self._send([call])
        except (TimeoutError, *UNAVAILABLE_ERRORS) as exc:
            raise EnqueueUnknown(name, call.ids[0], self.settings.redis.url,
                                 str(exc) or f"no answer in {ENQUEUE_TIMEOUT:g} s") from exc
        return single(self._plan.settle([call], replies, [None], replicas))

    async def enqueue_many(self, jobs: Iterable[JobRequest]) -> list[BatchOutcome]:
        """Enqueue a batch in one round trip, each job as ``enqueue`` would (dedup by id, size bound,
        atomic per job): one script call per queue and ENQUEUE_CHUNK jobs. Returns, in order, each job's
        ``Enqueued`` (``created`` False for a duplicate id, also one repeated inside the batch) or what
        rejected it (``QueueFull``, ``RedisFull``, ``EnqueueUnknown``, ``ValueError``, ``UnknownJob``).

        Raises QueueUnavailable when Redis cannot be reached: then no job's outcome is known.
        """
        outcomes, calls = self._plan.batch(jobs, time.time(), _context())
        if not calls:
            return outcomes  # type: ignore[return-value]
        try:
            replies, replicas = await self._send(calls)
        except UNAVAILABLE_ERRORS as exc:
            raise _batch_unavailable(self.settings, exc) from exc
        return self._plan.settle(calls, replies, outcomes, replicas)

    async def _send(self, calls: list[ScriptCall]) -> tuple[list[Any], int | None]:
        """Each call's reply (a Redis error as a value) in one round trip, with WAIT after the writes when
        redis.wait_replicas asks for it: (replies, replicas that confirmed them or None)."""
        wait = _wait_args(self.settings) if self.settings.redis.wait_replicas else None
        if wait is None and len(calls) == 1:  # one EVALSHA; the script object loads the script on NOSCRIPT
            try:
                return [await self._send_one(calls[0])], None
            except ResponseError as exc:
                return [exc], None
        replies: list[Any] = [None] * len(calls)
        todo, replicas = list(range(len(calls))), None
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                _queue_calls(pipe, self._enqueue.sha, calls, todo, wait)
                todo, confirmed = _take(replies, todo, await pipe.execute(raise_on_error=False), wait is not None)
            replicas = confirmed if replicas is None else min(replicas, confirmed or 0)
            if not todo:
                break
            await self.redis.script_load(ENQUEUE)
        return replies, replicas

    async def _send_one(self, call: ScriptCall) -> Any:
        if not self._lane_busy:
            self._lane_busy = True
            try:
                return await self._lane_call(call)
            except (NoScriptError, *UNAVAILABLE_ERRORS):
                # NOSCRIPT: nothing ran. A lost connection: the client's path below reconnects and retries,
                # and if the first send did land, the job's id finds it (an existing job adds nothing).
                pass
            finally:
                self._lane_busy = False
        return await self._enqueue_shared(keys=call.keys, args=call.argv)

    async def _lane_call(self, call: ScriptCall) -> Any:
        """The call's EVALSHA on the held connection; redis-py's read drops the connection on any error but
        a Redis error reply (raised as ResponseError), so a reply never lands on the next call."""
        conn = self._lane
        if conn is None:
            conn = self._lane = await self.redis.connection_pool.get_connection()
        await conn.send_packed_command(conn.pack_command("EVALSHA", self._enqueue.sha, len(call.keys), *call.keys,
                                                         *call.argv), check_health=False)
        return await conn.read_response()


class SyncQueueClient:
    """The sync twin of ``QueueClient.enqueue`` for code that has no event loop."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        if not settings.redis.url and client is None:
            raise QueueUnavailable("the queue tier is off: no redis.url (REDIS_URL) and no embedded redis-server")
        self.settings = settings
        self.redis = client or sync_client(settings.redis.url or "", socket_timeout=ENQUEUE_TIMEOUT / 4)
        self._enqueue = self.redis.register_script(ENQUEUE)
        self._plan = _plan(settings)

    def close(self) -> None:
        self.redis.close()

    def enqueue(self, name: str, *args: Any, priority: str | None = None, delay: float | None = None,
                at: float | None = None, job_id: str | None = None, **kwargs: Any) -> Enqueued:
        """The blocking twin of ``QueueClient.enqueue`` (same answers)."""
        call = self._plan.one(name, args, kwargs, priority, delay, at, job_id, time.time(), _context())
        try:
            replies, replicas = self._send([call])
        except UNAVAILABLE_ERRORS as exc:
            raise EnqueueUnknown(name, call.ids[0], self.settings.redis.url, exc) from exc
        return single(self._plan.settle([call], replies, [None], replicas))

    def enqueue_many(self, jobs: Iterable[JobRequest]) -> list[BatchOutcome]:
        """The blocking twin of ``QueueClient.enqueue_many``."""
        outcomes, calls = self._plan.batch(jobs, time.time(), _context())
        if not calls:
            return outcomes  # type: ignore[return-value]
        try:
            replies, replicas = self._send(calls)
        except UNAVAILABLE_ERRORS as exc:
            raise _batch_unavailable(self.settings, exc) from exc
        return self._plan.settle(calls, replies, outcomes, replicas)

    def _send(self, calls: list[ScriptCall]) -> tuple[list[Any], int | None]:
        """The blocking twin of ``QueueClient._send``."""
        wait = _wait_args(self.settings) if self.settings.redis.wait_replicas else None
        if wait is None and len(calls) == 1:
            try:
                return [self._enqueue(keys=calls[0].keys, args=calls[0].argv)], None
            except ResponseError as exc:
                return [exc], None
        replies: list[Any] = [None] * len(calls)
        todo, replicas = list(range(len(calls))), None
        for _ in range(2):
            with self.redis.pipeline(transaction=False) as pipe:
                _queue_calls(pipe, self._enqueue.sha, calls, todo, wait)
                todo, confirmed = _take(replies, todo, pipe.execute(raise_on_error=False), wait is not None)
            replicas = confirmed if replicas is None else min(replicas, confirmed or 0)
            if not todo:
                break
            self.redis.script_load(ENQUEUE)
        return replies, replicas
