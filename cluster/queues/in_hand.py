"""What a consumer holds: a ``Running`` record per job in hand, ``OnTheLoop``, the one whose code the
event loop runs at this instant, and ``Hand``, all of it with who holds it, shared by the consumer's parts.

The loop watchdog (``queues.watchdog``) runs in a thread of its own and, when the loop stops turning,
must tell which job holds it. Each job's coroutine is driven step by step through ``OnTheLoop.track``,
which names the job while one of its steps runs and clears the name when the step yields: the thread
reads that name. A blocked loop is inside one step, so the name it reads is the culprit's, or None when
the consumer's own code holds the loop.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Redis

from cluster.config import Settings
from cluster.queues.envelope import Envelope
from cluster.queues.keys import QueueKeys
from cluster.queues.registry import JobSpec

T = TypeVar("T")


@dataclass
class Running:
    """A job in hand: what runs, since when (monotonic and wall clock), under which timeout."""

    envelope: Envelope
    spec: JobSpec
    timeout: float
    started: float
    started_at: float
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class OnTheLoop:
    """Which job in hand runs on the event loop now: its entry id while one of its steps runs, else None."""

    def __init__(self) -> None:
        # Written by the loop thread at every step of every job, read by the watchdog thread. Binding an
        # attribute is a single store, atomic in CPython: the reader sees the old value or the new one,
        # never a torn one, so no lock (which every step would pay for) is needed.
        self.entry_id: str | None = None

    async def track(self, entry_id: str, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` (the job of ``entry_id``), naming it here during each of its steps."""
        return await self._steps(entry_id, coro)

    @types.coroutine
    def _steps(self, entry_id: str, coro: Coroutine[Any, Any, T]) -> Generator[Any, Any, T]:
        """Drive ``coro`` as its task would: what it yields goes up to the task, what the task sends or
        throws (a cancellation) goes down to it."""
        value: Any = None
        error: BaseException | None = None
        while True:
            self.entry_id = entry_id
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            finally:
                self.entry_id = None
            value, error = None, None
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation too: the job handles it (asyncio.timeout does)
                error = exc


@dataclass
class Hand:
    """One consumer of a queue (its settings, queue, name, Redis client and keys) and what it holds; the
    consumer and its parts (acks, stuck-job guard, recovery, upkeep) share it. The dicts are mutated in
    place, never rebound."""

    settings: Settings
    priority: str
    name: str
    redis: Redis
    keys: QueueKeys
    running: dict[str, Running] = field(default_factory=dict)
    held: dict[str, dict[str, str]] = field(default_factory=dict)
    """Entries a blocked read delivered after an operator paused the queue: pending on this consumer, in
    hand like running jobs (lease renewed, never reaped), started on resume."""
    on_loop: OnTheLoop = field(default_factory=OnTheLoop)
