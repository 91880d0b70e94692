"""The producer side and the read side of the queues: enqueue (async and sync), job lookup, status, dead letter."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import OutOfMemoryError, ResponseError

from config import PRIORITIES, Settings
from config.masking import mask_url
from observability.context import read_your_writes_var, request_id_var
from queues import job_limits, metrics, registry
from queues.connection import UNAVAILABLE_ERRORS, QueueUnavailable, RedisFull, async_client, sync_client
from queues.envelope import FIELD, Envelope, check_job_id, decode, new_job_id
from queues.keys import GROUP, QueueKeys
from queues.scripts import ENQUEUE

QUEUED_JOB_TTL = 7 * 24 * 3600
HEARTBEAT_FRESH_MS = 10_000
ENQUEUE_TIMEOUT = 5.0
"""The longest an enqueue waits for Redis before answering "unknown" (the sync client: per try, a quarter)."""


class EnqueueUnknown(QueueUnavailable):
    """Redis did not answer: the job may or may not be enqueued. Retry with the same ``job_id``:
    an enqueue with an id that exists adds nothing, so the job runs at most once."""

    def __init__(self, name: str, job_id: str, url: str | None, cause: object) -> None:
        super().__init__(f"cannot tell whether job {job_id} ({name!r}) was enqueued: Redis at {mask_url(url)} is "
                         f"unreachable or did not answer ({cause}); retry with the same job_id")
        self.job_id = job_id


class QueueFull(RuntimeError):
    """The queue holds ``max_size`` jobs (ready + in flight, or delayed): try again later."""

    def __init__(self, priority: str, max_size: int, part: str) -> None:
        super().__init__(f"queue {priority!r} is full ({max_size} {part} jobs); try again later")
        self.priority = priority
        self.max_size = max_size
        self.retry_after = 1


@dataclass(frozen=True)
class Enqueued:
    id: str
    priority: str
    state: str
    created: bool  # False: a job with this id existed, nothing was added


@dataclass(frozen=True)
class JobRequest:
    """One job of a batch for ``enqueue_many``: the arguments ``enqueue`` takes."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: str | None = None
    delay: float | None = None
    at: float | None = None
    job_id: str | None = None


BatchOutcome = Enqueued | QueueFull | RedisFull | ValueError | registry.UnknownJob


Prepared = tuple[QueueKeys, list[Any], Envelope]


def _prepare_batch(settings: Settings, jobs: Iterable[JobRequest]) -> list[Prepared | Exception]:
    """Each job prepared for the script, or the error that rejects it (the others still go)."""
    prepared: list[Prepared | Exception] = []
    for job in jobs:
        try:
            prepared.append(_prepare(settings, job.name, job.args, job.kwargs, job.priority, job.delay, job.at,
                                     job.job_id))
        except (ValueError, registry.UnknownJob) as exc:
            prepared.append(exc)
    return prepared


def _batch_outcomes(settings: Settings, prepared: list[Prepared | Exception], replies: list[Any]) -> list[BatchOutcome]:
    outcomes: list[BatchOutcome] = []
    replies_left = iter(replies)
    for item in prepared:
        if isinstance(item, Exception):
            outcomes.append(item)  # type: ignore[arg-type]
            continue
        reply = next(replies_left)
        if isinstance(reply, OutOfMemoryError):
            outcomes.append(RedisFull(item[2].name))
            continue
        if isinstance(reply, Exception):
            raise reply
        try:
            outcomes.append(_result(settings, reply, item[2]))
        except QueueFull as exc:
            outcomes.append(exc)
    return outcomes


def _prepare(settings: Settings, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], priority: str | None,
             delay: float | None, at: float | None, job_id: str | None) -> tuple[QueueKeys, list[Any], Envelope]:
    """Validate a request to enqueue and build the script's keys and arguments."""
    spec = registry.get(name)
    priority = spec.priority if priority is None else priority
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    if delay is not None and at is not None:
        raise ValueError("give delay or at, not both")
    now = time.time()
    job_limits.check_schedule(delay, at, now, settings.queues.max_delay)
    job_limits.check_arguments(list(args), kwargs, settings.queues.max_payload_bytes)
    due = at if at is not None else now + (delay or 0.0)
    pool = settings.queues.pool(priority)
    envelope = Envelope(
        id=check_job_id(job_id) if job_id is not None else new_job_id(),
        name=name, priority=priority, args=list(args), kwargs=dict(kwargs),
        max_retries=pool.retries if spec.retries is None else spec.retries,
        enqueued_at=now, not_before=due,
        request_id=request_id_var.get(), read_your_writes=read_your_writes_var.get(),
    )
    try:
        payload = envelope.encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"job arguments must be JSON: {exc}") from None
    keys = QueueKeys(priority)
    ttl = int(max(QUEUED_JOB_TTL, due - now + QUEUED_JOB_TTL))
    argv = [envelope.id, payload, pool.max_size, int(due * 1000), int(now * 1000), ttl, FIELD]
    return keys, argv, envelope


def _result(settings: Settings, reply: list[Any], envelope: Envelope) -> Enqueued:
    code, state = int(reply[0]), str(reply[1])
    if code < 0:
        raise QueueFull(envelope.priority, settings.queues.pool(envelope.priority).max_size, state)
    if code == 1:
        metrics.ENQUEUED.labels(envelope.priority).inc()
    return Enqueued(envelope.id, envelope.priority, state, created=code == 1)


def _script_keys(keys: QueueKeys, job_id: str) -> list[str]:
    return [keys.stream, keys.delayed, keys.job(job_id), keys.stats]


def queue_requeue(pipe: Any, keys: QueueKeys, entry_id: str, envelope: Envelope) -> None:
    """Add to ``pipe`` what puts dead entry ``entry_id`` back on its queue with a fresh attempt count."""
    envelope.attempt = 1
    payload = envelope.encode()
    pipe.xadd(keys.stream, {FIELD: payload})
    pipe.hset(keys.job(envelope.id), mapping={"state": "queued", "envelope": payload, "attempts": 0})
    pipe.expire(keys.job(envelope.id), QUEUED_JOB_TTL)
    pipe.xdel(keys.dead, entry_id)


def _job_view(job_id: str, priority: str, data: dict[str, str]) -> dict[str, Any]:
    envelope = json.loads(data["envelope"]) if "envelope" in data else {}
    view: dict[str, Any] = {
        "id": job_id,
        "queue": priority,
        "name": envelope.get("name"),
        "state": data.get("state"),
        "attempts": int(data.get("attempts", 0)),
        "max_retries": envelope.get("max_retries"),
        "enqueued_at": envelope.get("enqueued_at"),
        "not_before": envelope.get("not_before"),
        "request_id": envelope.get("request_id"),
    }
    if "finished_at" in data:
        view["finished_at"] = float(data["finished_at"])
    if "result" in data:
        view["result"] = json.loads(data["result"])
    if "error" in data:
        view["error"] = data["error"]
    if data.get("state") == "running":
        view["consumer"] = data.get("consumer")
        view["started_at"] = float(data["started_at"]) if "started_at" in data else None
    if int(data.get("crashes", 0)):
        view["crashes"] = int(data["crashes"])
    return view


def _wait_args(settings: Settings) -> tuple[int, int]:
    return settings.redis.wait_replicas, int(settings.redis.wait_timeout * 1000)


def _check_replicated(settings: Settings, name: str, replicas: int) -> None:
    """An enqueue the replicas did not confirm is not acknowledged: a failover may drop it."""
    if replicas < settings.redis.wait_replicas:
        raise QueueUnavailable(f"cannot enqueue {name!r}: {replicas} of {settings.redis.wait_replicas} replicas "
                               f"confirmed it within {settings.redis.wait_timeout:g}s (redis.wait_replicas)")


class QueueClient:
    """One process's handle on the four queues (asyncio)."""

    def __init__(self, settings: Settings, client: redis.asyncio.Redis | None = None) -> None:
        if not settings.redis.url and client is None:
            raise QueueUnavailable("the queue tier is off: no redis.url (REDIS_URL) and no embedded redis-server")
        self.settings = settings
        self.redis = client or async_client(settings.redis.url or "")
        self._enqueue = self.redis.register_script(ENQUEUE)

    async def close(self) -> None:
        await self.redis.aclose()

    async def enqueue(self, name: str, *args: Any, priority: str | None = None, delay: float | None = None,
                      at: float | None = None, job_id: str | None = None, **kwargs: Any) -> Enqueued:
        """Add a job; with an existing ``job_id`` nothing is added and the existing job is returned.

        Answers within ``ENQUEUE_TIMEOUT``: the job is enqueued (or existed), or
        EnqueueUnknown carries the job id to retry with. Raises UnknownJob,
        ValueError (bad arguments), QueueFull, EnqueueUnknown.
        """
        keys, argv, envelope = _prepare(self.settings, name, args, kwargs, priority, delay, at, job_id)
        try:
            async with asyncio.timeout(ENQUEUE_TIMEOUT):
                if self.settings.redis.wait_replicas:
                    pipe = self.redis.pipeline(transaction=False)
                    await self._enqueue(keys=_script_keys(keys, envelope.id), args=argv, client=pipe)
                    pipe.execute_command("WAIT", *_wait_args(self.settings))
                    reply, replicas = await pipe.execute()
                    _check_replicated(self.settings, name, replicas)
                else:
                    reply = await self._enqueue(keys=_script_keys(keys, envelope.id), args=argv)
        except OutOfMemoryError as exc:
            raise RedisFull(name) from exc
        except (TimeoutError, *UNAVAILABLE_ERRORS) as exc:
            raise EnqueueUnknown(name, envelope.id, self.settings.redis.url,
                                 str(exc) or f"no answer in {ENQUEUE_TIMEOUT:g} s") from exc
        return _result(self.settings, reply, envelope)

    async def enqueue_many(self, jobs: Iterable[JobRequest]) -> list[BatchOutcome]:
        """Enqueue a batch in one pipelined round trip, each job as ``enqueue`` would (dedup by id,
        size bound, atomic per job); returns, in order, each job's ``Enqueued`` (``created`` False for a
        duplicate id) or the error that rejected it (``QueueFull``, ``ValueError``, ``UnknownJob``).

        Raises QueueUnavailable when Redis cannot be reached: then no job's outcome is known.
        """
        prepared = _prepare_batch(self.settings, jobs)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for item in prepared:
                    if not isinstance(item, Exception):
                        keys, argv, envelope = item
                        await self._enqueue(keys=_script_keys(keys, envelope.id), args=argv, client=pipe)
                replies = await pipe.execute(raise_on_error=False)
        except UNAVAILABLE_ERRORS as exc:
            raise QueueUnavailable(f"cannot enqueue a batch: Redis at {mask_url(self.settings.redis.url)} "
                                   f"is unreachable ({exc})") from exc
        return _batch_outcomes(self.settings, prepared, replies)

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The job's state, attempts and result or error; None when unknown (or expired)."""
        for priority in PRIORITIES:
            data = await self.redis.hgetall(QueueKeys(priority).job(job_id))
            if data:
                return _job_view(job_id, priority, data)
        return None

    async def ensure_group(self, priority: str) -> None:
        """Create the queue's stream and consumer group if missing (from the start of the stream)."""
        try:
            await self.redis.xgroup_create(QueueKeys(priority).stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def queue_status(self, priority: str) -> dict[str, Any]:
        keys = QueueKeys(priority)
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.stream)
            pipe.xpending(keys.stream, GROUP)
            pipe.zcard(keys.delayed)
            pipe.hgetall(keys.stats)
            pipe.xrange(keys.stream, count=1)
            pipe.zcount(keys.consumers, now_ms - HEARTBEAT_FRESH_MS, "+inf")
            pipe.xlen(keys.dead)
            replies = await pipe.execute(raise_on_error=False)
        length, pending, delayed, stats, first, consumers, dead_size = replies
        in_flight = pending["pending"] if isinstance(pending, dict) else 0
        oldest = None
        if isinstance(first, list) and first:
            oldest = max(0.0, (now_ms - int(first[0][0].split("-")[0])) / 1000)
        return {
            "depth": max(0, length - in_flight),
            "in_flight": in_flight,
            "delayed": delayed,
            "processed": int(stats.get("processed", 0)),
            "failed": int(stats.get("failed", 0)),
            "retried": int(stats.get("retried", 0)),
            "rerun": int(stats.get("rerun", 0)),
            "dead": int(stats.get("dead", 0)),
            "enqueued": int(stats.get("enqueued", 0)),
            "dead_letter_size": dead_size,
            "oldest_age_seconds": oldest,
            "consumers": consumers,
            "max_size": self.settings.queues.pool(priority).max_size,
        }

    async def status(self) -> dict[str, Any]:
        """Per queue: depth, in flight, delayed, counters, oldest age, live consumers."""
        try:
            return {priority: await self.queue_status(priority) for priority in PRIORITIES}
        except UNAVAILABLE_ERRORS as exc:
            raise QueueUnavailable(f"Redis at {mask_url(self.settings.redis.url)} is unreachable ({exc})") from exc

    # -- dead letter -----------------------------------------------------------

    async def dead_entries(self, priority: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letter entries, newest first."""
        entries: list[dict[str, Any]] = []
        for p in [priority] if priority else PRIORITIES:
            for entry_id, fields in await self.redis.xrevrange(QueueKeys(p).dead, count=limit):
                entries.append({"queue": p, "entry": entry_id, **fields})
        entries.sort(key=lambda e: e["entry"], reverse=True)
        return entries[:limit]

    async def requeue_dead(self, job_id: str | None = None) -> int:
        """Put dead jobs (one by id, or all) back on their queue with a fresh attempt count.

        They were accepted once, so they re-enter past the size cap. Entries
        whose payload cannot be decoded stay in the dead letter stream.
        """
        moved = 0
        for priority in PRIORITIES:
            keys = QueueKeys(priority)
            for entry_id, fields in await self.redis.xrange(keys.dead):
                if job_id is not None and fields.get("job_id") != job_id:
                    continue
                try:
                    envelope = decode(fields)
                except ValueError:
                    continue
                async with self.redis.pipeline(transaction=True) as pipe:
                    queue_requeue(pipe, keys, entry_id, envelope)
                    await pipe.execute()
                moved += 1
        return moved

    async def purge_dead(self) -> int:
        """Delete every dead letter entry; returns how many there were."""
        total = 0
        for priority in PRIORITIES:
            dead = QueueKeys(priority).dead
            total += await self.redis.xlen(dead)
            await self.redis.delete(dead)
        return total


class SyncQueueClient:
    """The sync twin of ``QueueClient.enqueue`` for code that has no event loop."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        if not settings.redis.url and client is None:
            raise QueueUnavailable("the queue tier is off: no redis.url (REDIS_URL) and no embedded redis-server")
        self.settings = settings
        self.redis = client or sync_client(settings.redis.url or "", socket_timeout=ENQUEUE_TIMEOUT / 4)
        self._enqueue = self.redis.register_script(ENQUEUE)

    def close(self) -> None:
        self.redis.close()

    def enqueue(self, name: str, *args: Any, priority: str | None = None, delay: float | None = None,
                at: float | None = None, job_id: str | None = None, **kwargs: Any) -> Enqueued:
        """The blocking twin of ``QueueClient.enqueue`` (same answers)."""
        keys, argv, envelope = _prepare(self.settings, name, args, kwargs, priority, delay, at, job_id)
        try:
            if self.settings.redis.wait_replicas:
                pipe = self.redis.pipeline(transaction=False)
                self._enqueue(keys=_script_keys(keys, envelope.id), args=argv, client=pipe)
                pipe.execute_command("WAIT", *_wait_args(self.settings))
                reply, replicas = pipe.execute()
                _check_replicated(self.settings, name, replicas)
            else:
                reply = self._enqueue(keys=_script_keys(keys, envelope.id), args=argv)
        except OutOfMemoryError as exc:
            raise RedisFull(name) from exc
        except UNAVAILABLE_ERRORS as exc:
            raise EnqueueUnknown(name, envelope.id, self.settings.redis.url, exc) from exc
        return _result(self.settings, reply, envelope)

    def enqueue_many(self, jobs: Iterable[JobRequest]) -> list[BatchOutcome]:
        """The blocking twin of ``QueueClient.enqueue_many``."""
        prepared = _prepare_batch(self.settings, jobs)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for item in prepared:
                    if not isinstance(item, Exception):
                        keys, argv, envelope = item
                        self._enqueue(keys=_script_keys(keys, envelope.id), args=argv, client=pipe)
                replies = pipe.execute(raise_on_error=False)
        except UNAVAILABLE_ERRORS as exc:
            raise QueueUnavailable(f"cannot enqueue a batch: Redis at {mask_url(self.settings.redis.url)} "
                                   f"is unreachable ({exc})") from exc
        return _batch_outcomes(self.settings, prepared, replies)
