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
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError

from cluster.config import PRIORITIES, Settings
from cluster.config.masking import mask_url
from cluster.observability.context import read_your_writes_var, request_id_var
from cluster.queues import job_limits, metrics, registry
from cluster.queues.connection import UNAVAILABLE_ERRORS, QueueUnavailable, RedisFull, async_client, sync_client
from cluster.queues.envelope import FIELD, Envelope, EnvelopeTemplate, check_job_id, decode, new_job_id, request_context
from cluster.queues.keys import GROUP, QueueKeys
from cluster.queues.multiplexed import MultiplexedRedis
from cluster.queues.scripts import ENQUEUE

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


BatchOutcome = Enqueued | QueueFull | QueueUnavailable | ValueError | registry.UnknownJob
"""A batch job's outcome: Enqueued, or what rejected it (QueueUnavailable: RedisFull, or EnqueueUnknown
when the replicas did not confirm the write)."""

ENQUEUE_CHUNK = 1000
"""The most jobs one script call adds: a larger batch goes as several calls (one round trip still),
so no single call holds Redis for long."""


@dataclass
class _Call:
    """One ENQUEUE script call: up to ENQUEUE_CHUNK jobs of one queue."""

    priority: str
    keys: list[str]
    argv: list[Any]
    positions: list[int] = field(default_factory=list)
    """Each job's place in the batch, in the order of the script's replies."""
    names: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


Accepted = tuple[int, str, str, str, str, float]
"""A job ready for the script: position in the batch, name, queue, id, envelope, due time."""


class _Jobs:
    """Turns enqueue requests into ENQUEUE script calls and their replies into outcomes.

    What the jobs of one name and queue share (the queue, the retry budget, the
    envelope's fixed text) is looked up once per client, not once per job.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        queues = settings.queues
        self.max_delay, self.max_payload = queues.max_delay, queues.max_payload_bytes
        self.max_size = {p: queues.pool(p).max_size for p in PRIORITIES}
        self._keys = {p: QueueKeys(p) for p in PRIORITIES}
        self._script_keys = {p: [k.stream, k.delayed, k.stats] for p, k in self._keys.items()}
        self._kinds: dict[tuple[str, str | None], tuple[registry.JobSpec, str, EnvelopeTemplate]] = {}
        self._enqueued = {p: metrics.ENQUEUED.labels(p) for p in PRIORITIES}

    def _kind(self, name: str, priority: str | None) -> tuple[str, EnvelopeTemplate]:
        spec = registry.get(name)
        found = self._kinds.get((name, priority))
        if found is None or found[0] is not spec:  # a name registered again gets its new spec
            queue = spec.priority if priority is None else priority
            if queue not in PRIORITIES:
                raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {queue!r}")
            retries = self.settings.queues.pool(queue).retries if spec.retries is None else spec.retries
            found = self._kinds[(name, priority)] = (spec, queue, EnvelopeTemplate(name, queue, retries))
        return found[1], found[2]

    def prepare(self, name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], priority: str | None,
                delay: float | None, at: float | None, job_id: str | None, now: float,
                context: str) -> tuple[str, str, str, float]:
        """(queue, job id, envelope, due time) of one request; ValueError or UnknownJob rejects it."""
        queue, template = self._kind(name, priority)
        due = now
        if delay is not None or at is not None:
            if delay is not None and at is not None:
                raise ValueError("give delay or at, not both")
            job_limits.check_schedule(delay, at, now, self.max_delay)
            due = float(at) if at is not None else now + delay  # type: ignore[operator]
        args_json, kwargs_json = job_limits.encode_arguments(args, kwargs, self.max_payload)
        job_id = new_job_id() if job_id is None else check_job_id(job_id)
        return queue, job_id, template.encode(job_id, args_json, kwargs_json, now, due, context), due

    def calls(self, jobs: Iterable[Accepted], now: float) -> list[_Call]:
        """The script calls that add ``jobs``, per queue in order, ENQUEUE_CHUNK jobs at most a call."""
        now_ms = int(now * 1000)
        open_calls: dict[str, _Call] = {}
        calls: list[_Call] = []
        for position, name, queue, job_id, payload, due in jobs:
            call = open_calls.get(queue)
            if call is None or len(call.ids) == ENQUEUE_CHUNK:
                call = open_calls[queue] = _Call(queue, self._script_keys[queue], [
                    self.max_size[queue], now_ms, FIELD, self._keys[queue].job_prefix, QUEUED_JOB_TTL])
                calls.append(call)
            call.positions.append(position)
            call.names.append(name)
            call.ids.append(job_id)
            call.argv.append(f"{job_id} {int(due * 1000)} {payload}")
        return calls

    def settle(self, calls: list[_Call], replies: list[Any], outcomes: list[BatchOutcome | None],
               replicas: int | None = None) -> list[BatchOutcome]:
        """``outcomes`` completed from each call's reply: pairs (code, state), or the error the call got.

        ``replicas``: how many replicas confirmed the writes (WAIT); short of
        redis.wait_replicas, a job that was written is EnqueueUnknown (retry with its id).
        """
        wanted = self.settings.redis.wait_replicas
        unconfirmed = replicas is not None and replicas < wanted
        for call, reply in zip(calls, replies):
            if isinstance(reply, OutOfMemoryError):  # refused at the call's first write: none of its jobs was added
                for position, name in zip(call.positions, call.names):
                    outcomes[position] = RedisFull(name)
                continue
            if isinstance(reply, Exception):
                raise reply
            created = 0
            for position, name, job_id, code, state in zip(call.positions, call.names, call.ids, reply[::2],
                                                           reply[1::2]):
                if code < 0:
                    outcomes[position] = QueueFull(call.priority, self.max_size[call.priority], state)
                elif unconfirmed:
                    outcomes[position] = EnqueueUnknown(name, job_id, self.settings.redis.url,
                                                        f"{replicas} of {wanted} replicas confirmed the write within "
                                                        f"{self.settings.redis.wait_timeout:g}s (redis.wait_replicas)")
                else:
                    created += code
                    outcomes[position] = Enqueued(job_id, call.priority, state, created=code == 1)
            if created:
                self._enqueued[call.priority].inc(created)
        return outcomes  # type: ignore[return-value]

    def batch(self, jobs: Iterable[JobRequest]) -> tuple[list[BatchOutcome | None], list[_Call]]:
        """Each job's outcome where it is already known (rejected before any write), and the calls for the rest."""
        now = time.time()
        context = request_context(request_id_var.get(), read_your_writes_var.get())
        outcomes: list[BatchOutcome | None] = []
        accepted: list[Accepted] = []
        for position, job in enumerate(jobs):
            try:
                accepted.append((position, job.name, *self.prepare(job.name, job.args, job.kwargs, job.priority,
                                                                    job.delay, job.at, job.job_id, now, context)))
            except (ValueError, registry.UnknownJob) as exc:
                outcomes.append(exc)
                continue
            outcomes.append(None)
        return outcomes, self.calls(accepted, now)

    def one(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], priority: str | None,
            delay: float | None, at: float | None, job_id: str | None) -> _Call:
        """The script call of one job; raises what rejects it (ValueError, UnknownJob)."""
        now = time.time()
        context = request_context(request_id_var.get(), read_your_writes_var.get())
        [call] = self.calls([(0, name, *self.prepare(name, args, kwargs, priority, delay, at, job_id, now, context))],
                            now)
        return call


def _single(outcomes: list[BatchOutcome]) -> Enqueued:
    """The one job's outcome, raised when it is an error."""
    [outcome] = outcomes
    if not isinstance(outcome, Enqueued):
        raise outcome
    return outcome


def _unknown_scripts(replies: list[Any]) -> list[int]:
    """The calls Redis did not know the script for (it restarted or flushed its scripts): they did not run."""
    return [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]


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


def _queue_calls(pipe: Any, sha: str, calls: list[_Call], todo: list[int], wait: tuple[int, int] | None) -> None:
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


class QueueClient:
    """One process's handle on the four queues (asyncio)."""

    def __init__(self, settings: Settings, client: redis.asyncio.Redis | None = None) -> None:
        if not settings.redis.url and client is None:
            raise QueueUnavailable("the queue tier is off: no redis.url (REDIS_URL) and no embedded redis-server")
        self.settings = settings
        self.redis = client or async_client(settings.redis.url or "")
        self._enqueue = self.redis.register_script(ENQUEUE)
        self._jobs = _Jobs(settings)
        # One connection held for single enqueues, their EVALSHA written and read on it directly:
        # redis-py's command path (pool checkout, retry wrapper, instrumentation) costs the client more
        # CPU than the round trip itself. Calls that find it busy, and a call it fails, go on the shared
        # pipelined connection (a reader task in between: dearer for one caller at a time, far cheaper
        # for many at once).
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
        call = self._jobs.one(name, args, kwargs, priority, delay, at, job_id)
        try:
            async with asyncio.timeout(ENQUEUE_TIMEOUT):
                replies, replicas = await self._send([call])
        except (TimeoutError, *UNAVAILABLE_ERRORS) as exc:
            raise EnqueueUnknown(name, call.ids[0], self.settings.redis.url,
                                 str(exc) or f"no answer in {ENQUEUE_TIMEOUT:g} s") from exc
        return _single(self._jobs.settle([call], replies, [None], replicas))

    async def enqueue_many(self, jobs: Iterable[JobRequest]) -> list[BatchOutcome]:
        """Enqueue a batch in one round trip, each job as ``enqueue`` would (dedup by id, size bound,
        atomic per job): one script call per queue and ENQUEUE_CHUNK jobs. Returns, in order, each job's
        ``Enqueued`` (``created`` False for a duplicate id, also one repeated inside the batch) or what
        rejected it (``QueueFull``, ``RedisFull``, ``EnqueueUnknown``, ``ValueError``, ``UnknownJob``).

        Raises QueueUnavailable when Redis cannot be reached: then no job's outcome is known.
        """
        outcomes, calls = self._jobs.batch(jobs)
        if not calls:
            return outcomes  # type: ignore[return-value]
        try:
            replies, replicas = await self._send(calls)
        except UNAVAILABLE_ERRORS as exc:
            raise _batch_unavailable(self.settings, exc) from exc
        return self._jobs.settle(calls, replies, outcomes, replicas)

    async def _send(self, calls: list[_Call]) -> tuple[list[Any], int | None]:
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

    async def _send_one(self, call: _Call) -> Any:
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

    async def _lane_call(self, call: _Call) -> Any:
        """The call's EVALSHA on the held connection; redis-py's read drops the connection on any error but
        a Redis error reply (raised as ResponseError), so a reply never lands on the next call."""
        conn = self._lane
        if conn is None:
            conn = self._lane = await self.redis.connection_pool.get_connection()
        await conn.send_packed_command(conn.pack_command("EVALSHA", self._enqueue.sha, len(call.keys), *call.keys,
                                                         *call.argv), check_health=False)
        return await conn.read_response()

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
        self._jobs = _Jobs(settings)

    def close(self) -> None:
        self.redis.close()

    def enqueue(self, name: str, *args: Any, priority: str | None = None, delay: float | None = None,
                at: float | None = None, job_id: str | None = None, **kwargs: Any) -> Enqueued:
        """The blocking twin of ``QueueClient.enqueue`` (same answers)."""
        call = self._jobs.one(name, args, kwargs, priority, delay, at, job_id)
        try:
            replies, replicas = self._send([call])
        except UNAVAILABLE_ERRORS as exc:
            raise EnqueueUnknown(name, call.ids[0], self.settings.redis.url, exc) from exc
        return _single(self._jobs.settle([call], replies, [None], replicas))

    def enqueue_many(self, jobs: Iterable[JobRequest]) -> list[BatchOutcome]:
        """The blocking twin of ``QueueClient.enqueue_many``."""
        outcomes, calls = self._jobs.batch(jobs)
        if not calls:
            return outcomes  # type: ignore[return-value]
        try:
            replies, replicas = self._send(calls)
        except UNAVAILABLE_ERRORS as exc:
            raise _batch_unavailable(self.settings, exc) from exc
        return self._jobs.settle(calls, replies, outcomes, replicas)

    def _send(self, calls: list[_Call]) -> tuple[list[Any], int | None]:
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
