"""What happens to a job that did not succeed: the decision (retry, run again, failed, dead letter) and
the Redis writes that carry it out, apart from the consumer that collects the failures and flushes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.config.settings import QueueSettings
from cluster.queues.enqueue_plan import QUEUED_JOB_TTL
from cluster.queues.envelope import FIELD, Envelope
from cluster.queues.keys import GROUP, QueueKeys
from cluster.queues.policy import backoff_delay, crashed_out, should_retry

DEAD_MAX = 10_000
"""The dead letter stream keeps about this many entries (approximate trim)."""
TRACEBACK_MAX = 8000
ATTEMPT_FAILURES = ("failed", "retries exhausted", "timeout", "result is not JSON")
"""Reasons of a run whose handler ran and failed: each counts as a failed attempt (a final one too)."""


@dataclass
class Failure:
    """A run that did not succeed (or an entry that cannot run), waiting to be flushed.

    ``outcome`` is set by ``decide``: ``retry`` (a later attempt, after
    backoff), ``requeue`` (the same attempt again, now: its consumer died),
    ``failed`` (final, kept in the job's state only) or ``dead``.
    """

    entry_id: str
    error: str
    traceback: str = ""
    envelope: Envelope | None = None
    raw: str | None = None
    reason: str = "failed"
    outcome: str = "dead"

    @property
    def ran(self) -> bool:
        """The handler ran and this counts as a failed attempt."""
        return self.envelope is not None and self.reason in ATTEMPT_FAILURES


def decide(failure: Failure) -> None:
    """Set the failure's ``outcome`` (and, for a final one, the ``reason`` the dead letter shows)."""
    envelope = failure.envelope
    if failure.reason == "crashed":
        assert envelope is not None
        if crashed_out(envelope.crashes):
            failure.reason = f"crashed its consumer {envelope.crashes} times"
        else:
            failure.outcome = "requeue"
    elif failure.reason == "result is not JSON":
        failure.outcome = "failed"
    elif failure.ran and should_retry(envelope.attempt, envelope.max_retries):  # type: ignore[union-attr]
        failure.outcome = "retry"
    elif failure.reason == "failed":
        failure.reason = "retries exhausted"


def queue_writes(pipe: Any, failure: Failure, keys: QueueKeys, queues: QueueSettings, now: float) -> None:
    """Add the decided failure's writes to ``pipe`` (async or sync pipeline: the calls are the same), its
    entry's acknowledgement included."""
    envelope = failure.envelope
    if failure.ran:
        pipe.hincrby(keys.stats, "failed", 1)
    if failure.outcome == "retry":
        assert envelope is not None
        due = now + backoff_delay(envelope.attempt, queues.backoff_base, queues.backoff_max)
        following = envelope.next_attempt(due)
        job_key = keys.job(envelope.id)
        pipe.hset(job_key, mapping={"state": "retrying", "envelope": following.encode(),
                                    "attempts": envelope.attempt, "error": failure.error})
        pipe.expire(job_key, QUEUED_JOB_TTL)
        pipe.zadd(keys.delayed, {envelope.id: int(due * 1000)})
        pipe.hincrby(keys.stats, "retried", 1)
    elif failure.outcome == "requeue":
        assert envelope is not None
        payload = envelope.encode()
        pipe.xadd(keys.stream, {FIELD: payload})
        pipe.hset(keys.job(envelope.id), mapping={"state": "queued", "envelope": payload,
                                                  "crashes": envelope.crashes})
        pipe.expire(keys.job(envelope.id), QUEUED_JOB_TTL)
        pipe.hincrby(keys.stats, "rerun", 1)
    elif failure.outcome == "failed":
        assert envelope is not None
        pipe.hset(keys.job(envelope.id), mapping={"state": "failed", "attempts": envelope.attempt,
                                                  "error": failure.error, "finished_at": now})
        pipe.expire(keys.job(envelope.id), int(queues.result_ttl))
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
            pipe.expire(job_key, int(queues.result_ttl))
    pipe.xack(keys.stream, GROUP, failure.entry_id)
    pipe.xdel(keys.stream, failure.entry_id)
