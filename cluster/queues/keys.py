"""Redis key names. Every key of one queue shares the hash tag ``{cq:<priority>}``.

So a queue's stream, delayed set, job hashes, stats and dead letter stream
live in one Redis Cluster slot, and the Lua scripts that touch several of
them stay legal there.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"


@dataclass(frozen=True)
class QueueKeys:
    priority: str

    @property
    def tag(self) -> str:
        return "{cq:" + self.priority + "}"

    @property
    def stream(self) -> str:
        """Ready and in-flight jobs (acknowledged entries are deleted)."""
        return f"{self.tag}:stream"

    @property
    def delayed(self) -> str:
        """Sorted set of job ids by due time (ms): delayed jobs and retries in backoff."""
        return f"{self.tag}:delayed"

    @property
    def dead(self) -> str:
        """Dead letter stream, capped like Sidekiq's dead set."""
        return f"{self.tag}:dead"

    @property
    def stats(self) -> str:
        """Hash of lifetime counters: enqueued, processed, failed, retried, dead."""
        return f"{self.tag}:stats"

    @property
    def consumers(self) -> str:
        """Sorted set of consumer names by last heartbeat (ms)."""
        return f"{self.tag}:consumers"

    @property
    def paused(self) -> str:
        """Present while an operator has paused the queue: its consumers take no new entries."""
        return f"{self.tag}:paused"

    @property
    def reaper_lock(self) -> str:
        return f"{self.tag}:reaper"

    def planned_exit(self, consumer: str) -> str:
        """Set by a consumer that kills itself on purpose: the jobs it leaves are not to blame."""
        return f"{self.tag}:planned-exit:{consumer}"

    @property
    def job_prefix(self) -> str:
        return f"{self.tag}:job:"

    def job(self, job_id: str) -> str:
        """Hash of one job: state, envelope, attempts, result or error (always with a TTL)."""
        return self.job_prefix + job_id

    def unique(self, key: str) -> str:
        """A unique job's lock: the id of the job holding ``key``, with the job's ``unique_for`` as TTL."""
        return f"{self.tag}:unique:{key}"

    def unique_owner(self, job_id: str) -> str:
        """The name of the unique lock job ``job_id`` holds (same TTL), so the job can free it when it ends."""
        return f"{self.tag}:unique-owner:{job_id}"


@dataclass(frozen=True)
class PeriodicKeys:
    """The keys of the periodic jobs' scheduler, under their own hash tag (no queue's)."""

    tag: str = "{cq:periodic}"

    @property
    def leader(self) -> str:
        """The leader's lease: its token (``<consumer name>:<random>``), with a TTL of ``queues.periodic_lease``."""
        return f"{self.tag}:leader"

    @property
    def last(self) -> str:
        """Hash of job name -> the latest tick (epoch s) enqueued or taken as the starting point."""
        return f"{self.tag}:last"
