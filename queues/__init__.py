"""Four Redis priority queues: ``@job`` to register, ``enqueue`` to add, pools (``queues.pool``) to run.

```python
from queues import job, enqueue, current_job

@job(priority="high", timeout=5, retries=3)
async def send_mail(to: str) -> dict:
    ctx = current_job()          # id, attempt, priority, request_id, settings, redis
    ...

await enqueue("send_mail", "a@example.com", job_id="welcome-42")
```
"""

from queues.api import configure, enqueue, enqueue_sync
from queues.client import Enqueued, QueueClient, QueueFull, SyncQueueClient
from queues.connection import QueueUnavailable
from queues.context import JobContext, current_job
from queues.execute import JobTimeout
from queues.registry import UnknownJob, job

__all__ = [
    "Enqueued", "JobContext", "JobTimeout", "QueueClient", "QueueFull", "QueueUnavailable", "SyncQueueClient",
    "UnknownJob", "configure", "current_job", "enqueue", "enqueue_sync", "job",
]
