"""What a running job can see about itself: ``queues.current_job()``."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from cluster.config import Settings
from cluster.db import Router
from cluster.resilience.cache import CACHE, ResilientCache


@dataclass(slots=True)
class JobContext:
    id: str
    name: str
    priority: str
    attempt: int
    max_retries: int
    request_id: str | None
    settings: Settings
    redis: redis.asyncio.Redis
    db: Router | None = None
    """The replica router (reads over replicas, writes to the primary); None without ``database.url``."""
    cache: ResilientCache = CACHE
    """The process's cache, the object handlers find in ``request.app[CACHE_KEY]``."""

    @property
    def last_attempt(self) -> bool:
        return self.attempt > self.max_retries


_current: ContextVar[JobContext | None] = ContextVar("current_job", default=None)


def current_job() -> JobContext:
    """The context of the job this code runs in; LookupError outside a job."""
    ctx = _current.get()
    if ctx is None:
        raise LookupError("not inside a job")
    return ctx


def set_current(ctx: JobContext) -> Any:
    return _current.set(ctx)
