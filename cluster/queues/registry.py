"""The job registry: ``@job`` registers a handler (async or sync) by name."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cluster.config import PRIORITIES
from cluster.queues import periodic
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


REGISTRY: dict[str, JobSpec] = {}


def job(name: str | None = None, *, priority: str = DEFAULT_PRIORITY, timeout: float | None = None,
        retries: int | None = None, cron: str | None = None) -> Callable[[F], F]:
    """Register the decorated function as a job.

    ``timeout`` and ``retries`` default to the priority's pool settings
    (``queues.<priority>.timeout`` / ``.retries``). The handler is called with
    the job's args and kwargs; ``queues.current_job()`` gives its context.
    ``cron`` (5 fields, or 6 with seconds last) makes it periodic: the pools enqueue it, with no
    arguments, once per tick across every host sharing the Redis (docs/queues.md, "Periodic jobs").
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0")
    if retries is not None and retries < 0:
        raise ValueError("retries must be >= 0")
    if cron is not None:
        periodic.check_cron(cron)

    def register(func: F) -> F:
        job_name = name or f"{func.__module__}.{func.__qualname__}"
        if cron is not None:  # its ticks' ids must be valid job ids
            check_job_id(periodic.job_id(job_name, 9_999_999_999))
        existing = REGISTRY.get(job_name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"job name {job_name!r} is already registered by {existing.func!r}")
        REGISTRY[job_name] = JobSpec(
            job_name, func, priority, timeout, retries, inspect.iscoroutinefunction(func), cron,
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
