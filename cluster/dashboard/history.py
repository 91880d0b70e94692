"""The dashboard's memory: points every ``history_step`` seconds and events, bounded, in Redis when there is one.

Points (worker count and bounds, health, the six metrics, request rate,
queue depths) feed the sparklines and the worker timeline; events
(autoscale decisions, replica state changes) mark them. Both are capped
Redis lists (LPUSH + LTRIM, newest first), so a restarted supervisor shows
the last day at once; without Redis they are deques in memory.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import Any

import redis.asyncio

from cluster.queues.connection import UNAVAILABLE_ERRORS

log = logging.getLogger("cluster.dashboard.history")
POINTS_KEY = "cluster:dashboard:points"
EVENTS_KEY = "cluster:dashboard:events"
MAX_EVENTS = 1000


class History:
    def __init__(self, max_points: int, client: redis.asyncio.Redis | None = None) -> None:
        self.max_points = max_points
        self.client = client
        self._points: deque[dict[str, Any]] = deque(maxlen=max_points)
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.loaded = client is None

    @property
    def backend(self) -> str:
        return "redis" if self.client is not None else "memory"

    async def load(self) -> bool:
        """Put what Redis kept (from before a restart) in front of the in-memory copy; reads are
        served from memory. False while Redis cannot be read (an embedded one may still be starting)."""
        if self.loaded or self.client is None:
            return True
        try:
            kept = [await self.client.lrange(key, 0, (memory.maxlen or 0) - 1)
                    for key, memory in ((POINTS_KEY, self._points), (EVENTS_KEY, self._events))]
        except UNAVAILABLE_ERRORS:
            return False
        for raw, memory in zip(kept, (self._points, self._events)):
            merged = [json.loads(line) for line in reversed(raw)] + list(memory)
            memory.clear()
            memory.extend(merged)  # a full deque keeps the newest
        self.loaded = True
        return True

    async def _push(self, key: str, memory: deque[dict[str, Any]], item: dict[str, Any]) -> None:
        """Keep in memory, and write through to Redis where it outlives this process."""
        memory.append(item)
        if self.client is None or not await self.load():
            return
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.lpush(key, json.dumps(item, separators=(",", ":")))
                pipe.ltrim(key, 0, (memory.maxlen or 0) - 1)
                await pipe.execute()
        except UNAVAILABLE_ERRORS as exc:
            log.warning("history not saved: Redis unreachable (%s)", exc)

    async def add_point(self, point: dict[str, Any]) -> None:
        await self._push(POINTS_KEY, self._points, point)

    async def add_event(self, event: dict[str, Any]) -> None:
        await self._push(EVENTS_KEY, self._events, event)

    def points(self, since: float) -> list[dict[str, Any]]:
        """Points at or after ``since``, oldest first."""
        return [p for p in self._points if p["at"] >= since]

    def events(self, since: float) -> list[dict[str, Any]]:
        return [e for e in self._events if e["at"] >= since]
