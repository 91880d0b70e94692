"""Unique jobs: ``enqueue_unique`` adds a job only when no job with the same key is queued or running.

```python
@job(unique_for=300)
async def rebuild_index(shop_id: int) -> None: ...

await enqueue("rebuild_index", 42)      # Enqueued(created=True)
await enqueue("rebuild_index", 42)      # the same job's id, created=False, while it is queued or running
await enqueue_unique("rebuild_index", 42, unique_key="shop-42", unique_for=60)   # a key and TTL of its own
```

``cluster.enqueue`` takes this path for every job registered with ``unique_for``; ``enqueue_unique``
(``cluster.queues.api``) is the same with a key or TTL given at the call.

The key is the job's name and arguments unless ``unique_key`` names it; the lock lasts until the job
ends (done, or dead after its last attempt) or ``unique_for`` seconds have passed, whichever is first
(``cluster.queues.unique_lock``). The lock is taken before the enqueue, in one script: of concurrent
enqueues exactly one takes it. An enqueue refused outright (a full queue, bad arguments) frees it; one
whose outcome is unknown (Redis did not answer) keeps it, as its job may be queued.
"""

from __future__ import annotations

from typing import Any

from cluster.queues import registry, unique_lock
from cluster.queues.client import QueueClient
from cluster.queues.connection import RedisFull
from cluster.queues.enqueue_plan import Enqueued, QueueFull
from cluster.queues.envelope import new_job_id
from cluster.queues.keys import QueueKeys


async def enqueue_unique(client: QueueClient, name: str, *args: Any, unique_key: str | None = None,
                         unique_for: float | None = None, priority: str | None = None, delay: float | None = None,
                         at: float | None = None, **kwargs: Any) -> Enqueued:
    """Enqueue job ``name`` on ``client`` unless a job holding its unique key is queued or running: then
    that job (``created=False``). ``unique_for`` (s) defaults to the job's ``@job(unique_for=)``; one of
    the two is required. Raises what ``enqueue`` raises.
    """
    spec = registry.get(name)
    ttl = spec.unique_for if unique_for is None else unique_lock.check_unique_for(unique_for)
    if ttl is None:
        raise ValueError(f"job {name!r} is not unique: give unique_for= here or in its @job")
    queue = spec.priority if priority is None else priority
    queues = client
    keys = QueueKeys(queue)
    job_id = new_job_id()
    key = unique_key if unique_key is not None else unique_lock.default_key(name, args, kwargs)
    held = await unique_lock.claim(queues.redis, keys, key, job_id, ttl)
    if held is not None:
        state = await queues.redis.hget(keys.job(held), "state")
        return Enqueued(held, queue, state or "queued", created=False)  # no state yet: its enqueue is under way
    try:
        return await queues.enqueue(name, *args, priority=priority, delay=delay, at=at, job_id=job_id, **kwargs)
    except (QueueFull, RedisFull, ValueError, registry.UnknownJob):  # refused: nothing was added
        await unique_lock.release(queues.redis, keys, job_id)
        raise
