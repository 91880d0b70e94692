"""What operators do to the queues: pause and resume, the dead letter set paged by cursor, retry, run now.

The dead letter stream can hold 100,000 entries: nothing here reads it whole.
A page is one XREVRANGE from an exclusive cursor; a search by job name scans
at most ``SCAN_BUDGET`` entries per request and hands back where it stopped,
so a request costs the same whatever the size of the set.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio

from cluster.config import PRIORITIES, Settings
from cluster.queues.admin import queue_requeue
from cluster.queues.envelope import FIELD, DecodeError, decode
from cluster.queues.keys import QueueKeys

SCAN_BATCH = 500
SCAN_BUDGET = 5000
PAGE_MAX = 200
# A stream entry id (milliseconds-sequence), what next_cursor hands out; anything else is a client's mistake.
STREAM_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")


class QueueOpError(ValueError):
    """A request that names no queue, entry or job we have (the message says which)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_queue(priority: str) -> str:
    if priority not in PRIORITIES:
        raise QueueOpError(f"no queue {priority!r}: one of {', '.join(PRIORITIES)}", 404)
    return priority


async def set_paused(client: redis.asyncio.Redis, priority: str, paused: bool) -> dict[str, Any]:
    """Pause (or resume) a queue; the flag lives in Redis, so it survives a restart of anything."""
    key = QueueKeys(check_queue(priority)).paused
    if paused:
        await client.set(key, str(time.time()))
    else:
        await client.delete(key)
    return {"queue": priority, "paused": paused}


async def paused_queues(client: redis.asyncio.Redis) -> dict[str, bool]:
    values = await client.mget([QueueKeys(p).paused for p in PRIORITIES])
    return {p: v is not None for p, v in zip(PRIORITIES, values)}


@dataclass
class DeadPage:
    """One page of dead letter entries, newest first, and the cursor of the next page (None at the end)."""

    queue: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None
    scanned: int = 0
    total: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "entries": self.entries, "next_cursor": self.next_cursor,
                "scanned": self.scanned, "total": self.total}


def _entry_view(priority: str, entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    return {
        "queue": priority, "entry": entry_id, "job_id": fields.get("job_id") or None,
        "name": fields.get("name") or None, "reason": fields.get("reason"), "error": fields.get("error"),
        "attempts": int(fields.get("attempts") or 0),
        "failed_at": float(fields["failed_at"]) if fields.get("failed_at") else None,
    }


async def dead_page(client: redis.asyncio.Redis, priority: str, cursor: str | None = None,
                    name: str | None = None, limit: int = 50) -> DeadPage:
    """Entries older than ``cursor`` (exclusive), newest first; with ``name`` only that job's.

    Without a name the page is one XREVRANGE. With one, batches are scanned
    until the page is full or ``SCAN_BUDGET`` entries were read; the cursor
    then points past the last entry read, so the next request goes on there.
    """
    keys = QueueKeys(check_queue(priority))
    if cursor is not None and not STREAM_ID.fullmatch(cursor):
        raise QueueOpError(f"cursor {cursor[:40]!r} is not a dead letter entry id (MS-SEQ, as next_cursor gives)")
    limit = max(1, min(limit, PAGE_MAX))
    page = DeadPage(priority, total=await client.xlen(keys.dead))
    start = f"({cursor}" if cursor else "+"
    budget = SCAN_BUDGET if name else limit
    while page.scanned < budget and len(page.entries) < limit:
        count = min(SCAN_BATCH, budget - page.scanned) if name else limit
        rows = await client.xrevrange(keys.dead, max=start, min="-", count=count)
        for entry_id, fields in rows:
            page.scanned += 1
            page.next_cursor = entry_id
            if not name or fields.get("name") == name:
                page.entries.append(_entry_view(priority, entry_id, fields))
                if len(page.entries) == limit:
                    break
        if len(rows) < count:  # the stream ends within this batch
            if not rows or page.next_cursor == rows[-1][0]:
                page.next_cursor = None
            return page
        start = f"({page.next_cursor}"
    return page


async def _requeue(client: redis.asyncio.Redis, keys: QueueKeys, rows: list[tuple[str, dict[str, str]]]) -> int:
    """Put dead entries back on their queue with a fresh attempt count; undecodable ones stay."""
    moved = 0
    async with client.pipeline(transaction=True) as pipe:
        for entry_id, fields in rows:
            try:
                envelope = decode(fields)
            except DecodeError:
                continue
            queue_requeue(pipe, keys, entry_id, envelope)
            moved += 1
        await pipe.execute()
    return moved


async def _entries(client: redis.asyncio.Redis, keys: QueueKeys, entry_ids: list[str]) -> list[tuple[str, Any]]:
    async with client.pipeline(transaction=False) as pipe:
        for entry_id in entry_ids:
            pipe.xrange(keys.dead, min=entry_id, max=entry_id, count=1)
        replies = await pipe.execute()
    return [rows[0] for rows in replies if rows]


async def retry_dead(client: redis.asyncio.Redis, priority: str, entry_ids: list[str]) -> dict[str, Any]:
    keys = QueueKeys(check_queue(priority))
    rows = await _entries(client, keys, entry_ids)
    if not rows:
        raise QueueOpError(f"no dead entry {', '.join(entry_ids)} in queue {priority!r}", 404)
    return {"queue": priority, "retried": await _requeue(client, keys, rows)}


async def delete_dead(client: redis.asyncio.Redis, priority: str, entry_ids: list[str]) -> dict[str, Any]:
    keys = QueueKeys(check_queue(priority))
    deleted = await client.xdel(keys.dead, *entry_ids) if entry_ids else 0
    if not deleted:
        raise QueueOpError(f"no dead entry {', '.join(entry_ids)} in queue {priority!r}", 404)
    return {"queue": priority, "deleted": deleted}


async def retry_all_dead(client: redis.asyncio.Redis, name: str | None = None,
                         priority: str | None = None) -> dict[str, Any]:
    """Requeue every dead entry (of job ``name``, of ``priority``), walking each stream in batches."""
    retried = 0
    for p in [check_queue(priority)] if priority else PRIORITIES:
        keys, start = QueueKeys(p), "-"
        while True:
            rows = await client.xrange(keys.dead, min=start, max="+", count=SCAN_BATCH)
            matching = [(i, f) for i, f in rows if not name or f.get("name") == name]
            if matching:
                retried += await _requeue(client, keys, matching)
            if len(rows) < SCAN_BATCH:
                break
            start = f"({rows[-1][0]}"
    return {"retried": retried, "name": name, "queue": priority}


async def delayed_jobs(client: redis.asyncio.Redis, priority: str, limit: int = 50) -> list[dict[str, Any]]:
    """The next delayed and retrying jobs of a queue, soonest first."""
    keys = QueueKeys(check_queue(priority))
    due = await client.zrange(keys.delayed, 0, limit - 1, withscores=True)
    async with client.pipeline(transaction=False) as pipe:
        for job_id, _ in due:
            pipe.hmget(keys.job(job_id), "state", "attempts", "envelope", "error")
        details = await pipe.execute()
    rows = []
    for (job_id, score), (state, attempts, envelope, error) in zip(due, details):
        name = None
        if envelope:
            try:
                name = decode({FIELD: envelope}).name
            except DecodeError:
                pass
        rows.append({"queue": priority, "id": job_id, "name": name, "state": state or "delayed",
                     "attempts": int(attempts or 0), "due_at": score / 1000, "error": error})
    return rows


async def run_now(client: redis.asyncio.Redis, priority: str, job_id: str) -> dict[str, Any]:
    """Make a delayed or retrying job due at once: the queue's next move of due jobs takes it."""
    keys = QueueKeys(check_queue(priority))
    if not await client.zadd(keys.delayed, {job_id: 0}, xx=True, ch=True) and \
            await client.zscore(keys.delayed, job_id) is None:
        raise QueueOpError(f"job {job_id!r} is not delayed in queue {priority!r}", 404)
    return {"queue": priority, "id": job_id, "due": "now"}


async def job_detail(client: redis.asyncio.Redis, settings: Settings, job_id: str) -> dict[str, Any] | None:
    """A job's state, attempts, result or error, request id, and its arguments; None when unknown."""
    from cluster.queues.admin import QueueAdmin

    job = await QueueAdmin(settings, client).get_job(job_id)
    if job is None:
        return None
    raw = await client.hget(QueueKeys(job["queue"]).job(job_id), "envelope")
    if raw:
        envelope = json.loads(raw)
        job["args"], job["kwargs"] = envelope.get("args"), envelope.get("kwargs")
    return job
