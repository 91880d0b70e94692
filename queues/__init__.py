"""Four Redis priority queues: ``@job`` to register, ``enqueue`` to add, pools (``queues.pool``) to run.

```python
from queues import job, enqueue, current_job

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
    "configure": "queues.api", "enqueue": "queues.api", "enqueue_sync": "queues.api",
    "enqueue_many": "queues.api", "enqueue_many_sync": "queues.api", "JobRequest": "queues.client",
    "Enqueued": "queues.client", "EnqueueUnknown": "queues.client", "QueueClient": "queues.client",
    "QueueFull": "queues.client",
    "SyncQueueClient": "queues.client", "QueueUnavailable": "queues.connection",
    "JobContext": "queues.context", "current_job": "queues.context", "JobTimeout": "queues.execute",
    "UnknownJob": "queues.registry", "job": "queues.registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'queues' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
