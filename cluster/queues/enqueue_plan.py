"""What an enqueue writes, worked out without touching Redis: validation, keys, envelope, script calls, outcomes.

``EnqueuePlan`` turns requests into ENQUEUE script calls (``one``, ``batch``)
and the script's replies into outcomes (``settle``). No I/O: the clock and the
request context come in as arguments, the enqueue counter as a callback, so the
transports (``client.py``) only send the calls and the plan is unit-tested
without Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import OutOfMemoryError

from cluster.config import PRIORITIES, Settings
from cluster.config.masking import mask_url
from cluster.queues import job_limits, registry
from cluster.queues.connection import QueueUnavailable, RedisFull
from cluster.queues.envelope import FIELD, EnvelopeTemplate, check_job_id, new_job_id
from cluster.queues.keys import QueueKeys

#: How long (s) a job's record (its hash) lives after its last write: a week.
QUEUED_JOB_TTL = 7 * 24 * 3600

#: The most jobs one script call adds: a larger batch goes as several calls (one round trip still),
#: so no single call holds Redis for long.
ENQUEUE_CHUNK = 1000


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


@dataclass
class ScriptCall:
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


class EnqueuePlan:
    """Turns enqueue requests into ENQUEUE script calls and their replies into outcomes.

    What the jobs of one name and queue share (the queue, the retry budget, the
    envelope's fixed text) is looked up once per client, not once per job.
    ``count(priority, n)`` is told of the ``n`` jobs a reply says were added.
    """

    def __init__(self, settings: Settings, count: Callable[[str, int], None]) -> None:
        self.settings = settings
        queues = settings.queues
        self.max_delay, self.max_payload = queues.max_delay, queues.max_payload_bytes
        self.max_size = {p: queues.pool(p).max_size for p in PRIORITIES}
        self._keys = {p: QueueKeys(p) for p in PRIORITIES}
        self._script_keys = {p: [k.stream, k.delayed, k.stats] for p, k in self._keys.items()}
        self._kinds: dict[tuple[str, str | None], tuple[registry.JobSpec, str, EnvelopeTemplate]] = {}
        self._count = count

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

    def calls(self, jobs: Iterable[Accepted], now: float) -> list[ScriptCall]:
        """The script calls that add ``jobs``, per queue in order, ENQUEUE_CHUNK jobs at most a call."""
        now_ms = int(now * 1000)
        open_calls: dict[str, ScriptCall] = {}
        calls: list[ScriptCall] = []
        for position, name, queue, job_id, payload, due in jobs:
            call = open_calls.get(queue)
            if call is None or len(call.ids) == ENQUEUE_CHUNK:
                call = open_calls[queue] = ScriptCall(queue, self._script_keys[queue], [
                    self.max_size[queue], now_ms, FIELD, self._keys[queue].job_prefix, QUEUED_JOB_TTL])
                calls.append(call)
            call.positions.append(position)
            call.names.append(name)
            call.ids.append(job_id)
            call.argv.append(f"{job_id} {int(due * 1000)} {payload}")
        return calls

    def settle(self, calls: list[ScriptCall], replies: list[Any], outcomes: list[BatchOutcome | None],
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
                self._count(call.priority, created)
        return outcomes  # type: ignore[return-value]

    def batch(self, jobs: Iterable[JobRequest], now: float,
              context: str) -> tuple[list[BatchOutcome | None], list[ScriptCall]]:
        """Each job's outcome where it is already known (rejected before any write), and the calls for the rest."""
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
            delay: float | None, at: float | None, job_id: str | None, now: float, context: str) -> ScriptCall:
        """The script call of one job; raises what rejects it (ValueError, UnknownJob)."""
        [call] = self.calls([(0, name, *self.prepare(name, args, kwargs, priority, delay, at, job_id, now, context))],
                            now)
        return call


def single(outcomes: list[BatchOutcome]) -> Enqueued:
    """The one job's outcome, raised when it is an error."""
    [outcome] = outcomes
    if not isinstance(outcome, Enqueued):
        raise outcome
    return outcome

