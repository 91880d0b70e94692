"""The process-wide enqueue functions, bound to this process's settings by ``configure``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cluster.config import Settings
from cluster.queues import registry, unique
from cluster.queues.client import BatchOutcome, Enqueued, JobRequest, QueueClient, SyncQueueClient
from cluster.queues.connection import QueueUnavailable

_settings: Settings | None = None
_client: QueueClient | None = None
_sync: SyncQueueClient | None = None


def configure(settings: Settings, client: QueueClient | None = None) -> None:
    """Bind ``enqueue``/``enqueue_sync`` to these settings (HTTP workers and pools do it at start)."""
    global _settings, _client, _sync
    _settings, _client, _sync = settings, client, None


def _need_settings() -> Settings:
    if _settings is None:
        raise QueueUnavailable("queues are not configured in this process (call queues.configure(settings))")
    return _settings


def client() -> QueueClient:
    """This process's async client (created on first use)."""
    global _client
    if _client is None:
        _client = QueueClient(_need_settings())
    return _client


async def enqueue(name: str, *args: Any, priority: str | None = None, delay: float | None = None,
                  at: float | None = None, job_id: str | None = None, **kwargs: Any) -> Enqueued:
    """Enqueue job ``name``; see ``QueueClient.enqueue``. A job registered with ``unique_for`` and given
    no ``job_id`` is added only when no job of its key is queued or running (``cluster.queues.unique``)."""
    if job_id is None and _is_unique(name):
        return await unique.enqueue_unique(client(), name, *args, priority=priority, delay=delay, at=at, **kwargs)
    return await client().enqueue(name, *args, priority=priority, delay=delay, at=at, job_id=job_id, **kwargs)


async def enqueue_unique(name: str, *args: Any, unique_key: str | None = None, unique_for: float | None = None,
                         priority: str | None = None, delay: float | None = None, at: float | None = None,
                         **kwargs: Any) -> Enqueued:
    """Enqueue job ``name`` unless a job of the same key (``unique_key``, else its name and arguments) is
    queued or running for at most ``unique_for`` s (else the job's own); see ``cluster.queues.unique``."""
    return await unique.enqueue_unique(client(), name, *args, unique_key=unique_key, unique_for=unique_for,
                                       priority=priority, delay=delay, at=at, **kwargs)


def _is_unique(name: str) -> bool:
    try:
        return registry.get(name).unique_for is not None
    except registry.UnknownJob:
        return False  # the enqueue itself says so


async def enqueue_many(jobs: Iterable[JobRequest]) -> list[BatchOutcome]:
    """Enqueue a batch in one round trip; see ``QueueClient.enqueue_many``."""
    return await client().enqueue_many(jobs)


def sync_client() -> SyncQueueClient:
    """This process's blocking client (created on first use)."""
    global _sync
    if _sync is None:
        _sync = SyncQueueClient(_need_settings())
    return _sync


def enqueue_many_sync(jobs: Iterable[JobRequest]) -> list[BatchOutcome]:
    """The blocking twin of ``enqueue_many``."""
    return sync_client().enqueue_many(jobs)


def enqueue_sync(name: str, *args: Any, priority: str | None = None, delay: float | None = None,
                 at: float | None = None, job_id: str | None = None, **kwargs: Any) -> Enqueued:
    """The blocking twin of ``enqueue`` (for code without an event loop); unique jobs need the async one."""
    if job_id is None and _is_unique(name):
        raise ValueError(f"job {name!r} is unique (@job(unique_for=)): enqueue it with the async enqueue()")
    return sync_client().enqueue(name, *args, priority=priority, delay=delay, at=at, job_id=job_id, **kwargs)
