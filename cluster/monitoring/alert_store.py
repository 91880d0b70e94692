"""Where the alerts' durable state lives: Redis when the cluster has one, else this process's memory.

The state (firing alerts, silences, escalations) is one small JSON document,
written when it changes. A Redis that cannot be reached is logged and the
monitor carries on from memory: alerting must not stop because Redis did.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from typing import Any, Protocol

import redis.asyncio
from redis.exceptions import RedisError

log = logging.getLogger("cluster.monitoring.alerts")
KEY_PREFIX = "cluster:alerts:state"


class AlertStore(Protocol):
    where: str

    async def load(self) -> dict[str, Any] | None: ...

    async def save(self, state: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    where = "memory"

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None

    async def load(self) -> dict[str, Any] | None:
        return self.state

    async def save(self, state: dict[str, Any]) -> None:
        self.state = state

    async def close(self) -> None:
        pass


def state_key(state_dir: str) -> str:
    """One key per install: host name and state dir (several clusters may share a Redis)."""
    digest = hashlib.sha256(state_dir.encode()).hexdigest()[:12]
    return f"{KEY_PREFIX}:{socket.gethostname()}:{digest}"


class RedisStore:
    where = "redis"

    def __init__(self, url: str, key: str) -> None:
        self.key = key
        self.client = redis.asyncio.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    async def load(self) -> dict[str, Any] | None:
        raw = await self.client.get(self.key)
        return None if raw is None else json.loads(raw)

    async def save(self, state: dict[str, Any]) -> None:
        try:
            await self.client.set(self.key, json.dumps(state, separators=(",", ":")))
        except (RedisError, OSError) as exc:
            log.warning("cannot save the alert state to Redis: %s", exc, extra={"key": self.key})

    async def close(self) -> None:
        await self.client.aclose()


def store_for(redis_url: str | None, state_dir: str) -> AlertStore:
    return RedisStore(redis_url, state_key(state_dir)) if redis_url else MemoryStore()
