"""The job registry: ``@job`` registers a handler (async or sync) by name."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cluster.config import PRIORITIES

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


REGISTRY: dict[str, JobSpec] = {}


def job(name: str | None = None, *, priority: str = DEFAULT_PRIORITY, timeout: float | None = None,
        retries: int | None = None) -> Callable[[F], F]:
    """Register the decorated function as a job.

    ``timeout`` and ``retries`` default to the priority's pool settings
    (``queues.<priority>.timeout`` / ``.retries``). The handler is called with
    the job's args and kwargs; ``queues.current_job()`` gives its context.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0")
    if retries is not None and retries < 0:
        raise ValueError("retries must be >= 0")

    def register(func: F) -> F:
        job_name = name or f"{func.__module__}.{func.__qualname__}"
        existing = REGISTRY.get(job_name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"job name {job_name!r} is already registered by {existing.func!r}")
        REGISTRY[job_name] = JobSpec(
            job_name, func, priority, timeout, retries, inspect.iscoroutinefunction(func),
        )
        return func

    return register


def get(name: str) -> JobSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownJob(f"no job named {name!r} is registered") from None


def load_jobs_module(module: str | None) -> None:
    """Import the module whose ``@job`` decorators fill the registry (no-op for None)."""
    if module:
        importlib.import_module(module)
