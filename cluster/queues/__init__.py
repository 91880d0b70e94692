"""Four Redis priority queues: ``@job`` to register, ``enqueue`` to add, pools (``queues.pool``) to run.

```python
from cluster.queues import job, enqueue, current_job

@job(priority="high", timeout=5, retries=3)
async def send_mail(to: str) -> dict:
    ctx = current_job()          # id, attempt, priority, request_id, settings, redis
    ...

await enqueue("send_mail", "a@example.com", job_id="welcome-42")
```

The names below load on first use, so importing one submodule (the
supervisor imports ``queues.connection``) does not import prometheus_client
before the process has set its multiprocess directory.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "configure": "api", "enqueue": "api", "enqueue_sync": "api", "enqueue_many": "api", "enqueue_many_sync": "api", "enqueue_unique": "api",
    "JobRequest": "enqueue_plan", "Enqueued": "enqueue_plan", "EnqueueUnknown": "enqueue_plan", "QueueClient": "client",
    "QueueFull": "enqueue_plan", "SyncQueueClient": "client", "QueueUnavailable": "connection",
    "JobContext": "context", "current_job": "context", "JobTimeout": "execute",
    "UnknownJob": "registry", "job": "registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cluster.queues' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
