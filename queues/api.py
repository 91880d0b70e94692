"""The process-wide enqueue functions, bound to this process's settings by ``configure``."""

from __future__ import annotations

from typing import Any

from config import Settings
from queues.client import Enqueued, QueueClient, SyncQueueClient
from queues.connection import QueueUnavailable

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
    """Enqueue job ``name``; see ``QueueClient.enqueue``."""
    return await client().enqueue(name, *args, priority=priority, delay=delay, at=at, job_id=job_id, **kwargs)


def enqueue_sync(name: str, *args: Any, priority: str | None = None, delay: float | None = None,
                 at: float | None = None, job_id: str | None = None, **kwargs: Any) -> Enqueued:
    """The blocking twin of ``enqueue`` (for code without an event loop)."""
    global _sync
    if _sync is None:
        _sync = SyncQueueClient(_need_settings())
    return _sync.enqueue(name, *args, priority=priority, delay=delay, at=at, job_id=job_id, **kwargs)
