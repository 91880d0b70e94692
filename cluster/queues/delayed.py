"""The delayed sets seen and emptied by an operator (`cluster queues delayed [--purge]`).

A delayed set holds jobs not due yet: those enqueued with a delay and
retries waiting out their backoff. Bounded at the queue's ``max_size``, a
set filled with far-future jobs refuses every later delayed job (429) until
an operator looks at it and purges it.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio

from cluster.config import PRIORITIES
from cluster.queues.keys import QueueKeys

# KEYS: delayed set ; ARGV: job prefix. The job hashes share the set's hash tag (one slot).
PURGE = """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do redis.call('DEL', ARGV[1] .. id) end
redis.call('DEL', KEYS[1])
return #ids
"""


def _row(priority: str, job_id: str, due_ms: float, data: dict[str, str]) -> dict[str, Any]:
    envelope = json.loads(data["envelope"]) if "envelope" in data else {}
    return {"queue": priority, "id": job_id, "due_at": due_ms / 1000, "name": envelope.get("name"),
            "state": data.get("state"), "attempts": int(data.get("attempts", 0))}


async def delayed_jobs(client: redis.asyncio.Redis, priority: str | None = None,
                       limit: int = 100) -> list[dict[str, Any]]:
    """The soonest-due delayed jobs of one queue or of all, at most ``limit`` per queue."""
    rows: list[dict[str, Any]] = []
    for p in [priority] if priority else PRIORITIES:
        keys = QueueKeys(p)
        due = await client.zrange(keys.delayed, 0, limit - 1, withscores=True)
        async with client.pipeline(transaction=False) as pipe:
            for job_id, _ in due:
                pipe.hgetall(keys.job(job_id))
            jobs = await pipe.execute()
        rows.extend(_row(p, job_id, score, data) for (job_id, score), data in zip(due, jobs))
    rows.sort(key=lambda r: r["due_at"])
    return rows


async def purge_delayed(client: redis.asyncio.Redis, priority: str | None = None) -> dict[str, int]:
    """Delete every delayed job (and its job hash) of one queue or of all; returns how many per queue."""
    script = client.register_script(PURGE)
    return {p: int(await script(keys=[QueueKeys(p).delayed], args=[QueueKeys(p).job_prefix]))
            for p in ([priority] if priority else PRIORITIES)}
