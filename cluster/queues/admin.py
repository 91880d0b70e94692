"""The read and admin side of the queues: job lookup, status, the dead letter (list, requeue, purge), consumer groups.

What the CLI, the dashboard and the HTTP API ask of the queues, apart from
enqueueing. ``QueueAdmin`` needs only a Redis client and the settings; the
enqueue client (``client.QueueClient``) is one too, so a process that holds a
client for its enqueues reads through the same connections.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio
from redis.exceptions import ResponseError

from cluster.config import PRIORITIES, Settings
from cluster.config.masking import mask_url
from cluster.queues.connection import UNAVAILABLE_ERRORS, QueueUnavailable
from cluster.queues.enqueue_plan import QUEUED_JOB_TTL
from cluster.queues.envelope import FIELD, Envelope
from cluster.queues.keys import GROUP, QueueKeys

#: A consumer counts as live in ``status`` while its heartbeat is younger than this (ms).
HEARTBEAT_FRESH_MS = 10_000


def queue_requeue(pipe: Any, keys: QueueKeys, entry_id: str, envelope: Envelope) -> None:
    """Add to ``pipe`` what puts dead entry ``entry_id`` back on its queue with a fresh attempt count."""
    envelope.attempt = 1
    payload = envelope.encode()
    pipe.xadd(keys.stream, {FIELD: payload})
    pipe.hset(keys.job(envelope.id), mapping={"state": "queued", "envelope": payload, "attempts": 0})
    pipe.expire(keys.job(envelope.id), QUEUED_JOB_TTL)
    pipe.xdel(keys.dead, entry_id)


def job_view(job_id: str, priority: str, data: dict[str, str]) -> dict[str, Any]:
    """What ``get_job`` answers, from the job's hash ``data``."""
    envelope = json.loads(data["envelope"]) if "envelope" in data else {}
    view: dict[str, Any] = {
        "id": job_id,
        "queue": priority,
        "name": envelope.get("name"),
        "state": data.get("state"),
        "attempts": int(data.get("attempts", 0)),
        "max_retries": envelope.get("max_retries"),
        "enqueued_at": envelope.get("enqueued_at"),
        "not_before": envelope.get("not_before"),
        "request_id": envelope.get("request_id"),
    }
    if "finished_at" in data:
        view["finished_at"] = float(data["finished_at"])
    if "result" in data:
        view["result"] = json.loads(data["result"])
    if "error" in data:
        view["error"] = data["error"]
    if data.get("state") == "running":
        view["consumer"] = data.get("consumer")
        view["started_at"] = float(data["started_at"]) if "started_at" in data else None
    if int(data.get("crashes", 0)):
        view["crashes"] = int(data["crashes"])
    return view


class QueueAdmin:
    """Reads and admin writes on the four queues through ``redis`` (asyncio)."""

    def __init__(self, settings: Settings, client: redis.asyncio.Redis) -> None:
        self.settings = settings
        self.redis = client

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The job's state, attempts and result or error; None when unknown (or expired)."""
        for priority in PRIORITIES:
            data = await self.redis.hgetall(QueueKeys(priority).job(job_id))
            if data:
                return job_view(job_id, priority, data)
        return None

    async def ensure_group(self, priority: str) -> None:
        """Create the queue's stream and consumer group if missing (from the start of the stream)."""
        try:
            await self.redis.xgroup_create(QueueKeys(priority).stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def queue_status(self, priority: str) -> dict[str, Any]:
        keys = QueueKeys(priority)
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.stream)
            pipe.xpending(keys.stream, GROUP)
            pipe.zcard(keys.delayed)
            pipe.hgetall(keys.stats)
            pipe.xrange(keys.stream, count=1)
            pipe.zcount(keys.consumers, now_ms - HEARTBEAT_FRESH_MS, "+inf")
            pipe.xlen(keys.dead)
            replies = await pipe.execute(raise_on_error=False)
        length, pending, delayed, stats, first, consumers, dead_size = replies
        in_flight = pending["pending"] if isinstance(pending, dict) else 0
        oldest = None
        if isinstance(first, list) and first:
            oldest = max(0.0, (now_ms - int(first[0][0].split("-")[0])) / 1000)
        return {
            "depth": max(0, length - in_flight),
            "in_flight": in_flight,
            "delayed": delayed,
            "processed": int(stats.get("processed", 0)),
            "failed": int(stats.get("failed", 0)),
            "retried": int(stats.get("retried", 0)),
            "rerun": int(stats.get("rerun", 0)),
            "dead": int(stats.get("dead", 0)),
            "enqueued": int(stats.get("enqueued", 0)),
            "dead_letter_size": dead_size,
            "oldest_age_seconds": oldest,
            "consumers": consumers,
            "max_size": self.settings.queues.pool(priority).max_size,
        }

    async def status(self) -> dict[str, Any]:
        """Per queue: depth, in flight, delayed, counters, oldest age, live consumers."""
        try:
            return {priority: await self.queue_status(priority) for priority in PRIORITIES}
        except UNAVAILABLE_ERRORS as exc:
            raise QueueUnavailable(f"Redis at {mask_url(self.settings.redis.url)} is unreachable ({exc})") from exc

    # -- dead letter -----------------------------------------------------------

    async def dead_entries(self, priority: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letter entries, newest first."""
        entries: list[dict[str, Any]] = []
        for p in [priority] if priority else PRIORITIES:
            for entry_id, fields in await self.redis.xrevrange(QueueKeys(p).dead, count=limit):
                entries.append({"queue": p, "entry": entry_id, **fields})
        entries.sort(key=lambda e: e["entry"], reverse=True)
        return entries[:limit]

    async def dead_entries_of(self, job_id: str) -> list[tuple[str, str]]:
        """(queue, entry id) of each dead letter entry of job ``job_id``, oldest first; reads every entry."""
        return [(priority, entry_id) for priority in PRIORITIES
                for entry_id, fields in await self.redis.xrange(QueueKeys(priority).dead)
                if fields.get("job_id") == job_id]

    async def purge_dead(self) -> int:
        """Delete every dead letter entry; returns how many there were."""
        total = 0
        for priority in PRIORITIES:
            dead = QueueKeys(priority).dead
            total += await self.redis.xlen(dead)
            await self.redis.delete(dead)
        return total
