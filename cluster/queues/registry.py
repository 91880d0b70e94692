"""The job registry: ``@job`` registers a handler (async or sync) by name."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cluster.config import PRIORITIES
from cluster.queues import periodic, unique_lock
from cluster.queues.envelope import check_job_id

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_PRIORITY = "medium"


class UnknownJob(LookupError):
    """No handler is registered under this name."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: Callable[..., Any]
    priority: str
    timeout: float | None
    retries: int | None
    is_async: bool
    cron: str | None = None
    """A periodic job's schedule (``cluster.queues.periodic``); None for a job enqueued only on demand."""
    unique_for: float | None = None
    """A unique job's lock TTL (s) (``cluster.queues.unique``); None for a job that may be queued twice."""


REGISTRY: dict[str, JobSpec] = {}


def job(name: str | None = None, *, priority: str = DEFAULT_PRIORITY, timeout: float | None = None,
        retries: int | None = None, cron: str | None = None, unique_for: float | None = None) -> Callable[[F], F]:
    """Register the decorated function as a job.

    ``timeout`` and ``retries`` default to the priority's pool settings
    (``queues.<priority>.timeout`` / ``.retries``). The handler is called with
    the job's args and kwargs; ``queues.current_job()`` gives its context.
    ``cron`` (5 fields, or 6 with seconds last) makes it periodic: the pools enqueue it, with no
    arguments, once per tick across every host sharing the Redis (docs/queues.md, "Periodic jobs").
    ``unique_for`` (s) makes it unique: ``unique.enqueue_unique`` adds it only when no job of the same
    name and arguments is queued or running, for at most that long (docs/queues.md, "Unique jobs").
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0")
    if retries is not None and retries < 0:
        raise ValueError("retries must be >= 0")
    if cron is not None:
        periodic.check_cron(cron)
    if unique_for is not None:
        unique_for = unique_lock.check_unique_for(unique_for)

    def register(func: F) -> F:
        job_name = name or f"{func.__module__}.{func.__qualname__}"
        if cron is not None:  # its ticks' ids must be valid job ids
            check_job_id(periodic.job_id(job_name, 9_999_999_999))
        existing = REGISTRY.get(job_name)
        if existing is not None and func not in (existing.func, getattr(existing.func, "__wrapped__", None)):
            raise ValueError(f"job name {job_name!r} is already registered by {existing.func!r}")
        REGISTRY[job_name] = JobSpec(
            job_name, func if unique_for is None else unique_lock.releasing(func), priority, timeout, retries,
            inspect.iscoroutinefunction(func), cron, unique_for,
        )
        return func

    return register


def get(name: str) -> JobSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownJob(f"no job named {name!r} is registered") from None


def schedules() -> dict[str, str]:
    """Each periodic job's name and cron expression."""
    return {spec.name: spec.cron for spec in REGISTRY.values() if spec.cron is not None}


def load_jobs_module(module: str | None) -> None:
    """Import the module whose ``@job`` decorators fill the registry (no-op for None)."""
    if module:
        importlib.import_module(module)
