"""What a consumer holds: a ``Running`` record per job in hand, and ``Hand``, those records with who holds
them, shared by the consumer's parts (acks, stuck-job guard, recovery, upkeep).

The loop watchdog (``queues.watchdog``) runs in a thread of its own and, when the loop stops turning,
must tell which job holds it: ``on_the_loop`` answers from the records, by asking each job's coroutine
whether it is running (``cr_running``, true only while one of its steps executes). A blocked loop is
inside one step, so the answer is the culprit, or None when the consumer's own code holds the loop.

Why not a "job on the loop" attribute set at each step of each job: driving every job's coroutine
through a Python trampoline to set it cost 10 to 25 us of CPU per no-op job (+15-20 %, measured against
a real redis-server); asking the records when the loop is blocked costs nothing until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis

from cluster.config import Settings
from cluster.queues.envelope import Envelope
from cluster.queues.keys import QueueKeys
from cluster.queues.registry import JobSpec


@dataclass
class Running:
    """A job in hand: what runs, since when (monotonic and wall clock), under which timeout."""

    envelope: Envelope
    spec: JobSpec
    timeout: float
    started: float
    started_at: float
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def on_the_loop(running: Mapping[str, Running]) -> str | None:
    """The entry id of the job in hand whose code the event loop runs at this instant, or None.

    Safe from another thread: ``list()`` copies the dict in one C call under the GIL (atomic in CPython),
    so the loop thread adding or dropping a job meanwhile cannot break the walk; ``task`` and
    ``cr_running`` are single attribute reads, atomic too.
    """
    for entry_id, job in list(running.items()):
        task = job.task
        if task is not None and getattr(task.get_coro(), "cr_running", False):
            return entry_id
    return None


@dataclass
class Hand:
    """One consumer of a queue (its settings, queue, name, Redis client and keys) and what it holds; the
    consumer and its parts share it. The dicts are mutated in place, never rebound."""

    settings: Settings
    priority: str
    name: str
    redis: Redis
    keys: QueueKeys
    running: dict[str, Running] = field(default_factory=dict)
    held: dict[str, dict[str, str]] = field(default_factory=dict)
    """Entries a blocked read delivered after an operator paused the queue: pending on this consumer, in
    hand like running jobs (lease renewed, never reaped), started on resume."""
