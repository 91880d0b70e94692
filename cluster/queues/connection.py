"""Redis connections for the queues: reconnect with backoff, clear errors when Redis is away.

A ``redis+sentinel://HOST:PORT,HOST:PORT/MASTER/DB`` URL (what ``redis.sentinels`` and
``redis.sentinel_master`` become, REDIS_SENTINELS / REDIS_SENTINEL_MASTER) connects through
Redis Sentinel: the clients ask the sentinels for the current master and follow a failover.
One Sentinel client per process and sentinel set, shared by every pool of that process.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
import redis.retry

from cluster.config.masking import mask_url


UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
SENTINEL_SCHEME = "redis+sentinel"
_sentinels: dict[tuple[Any, ...], Any] = {}


class QueueUnavailable(RuntimeError):
    """Redis cannot be reached (or the queue tier is off)."""

    retry_after = 1


class RedisFull(QueueUnavailable):
    """Redis reached its maxmemory and evicts nothing: no job is added until some drain (503, not 500)."""

    retry_after = 5

    def __init__(self, name: str) -> None:
        super().__init__(f"cannot enqueue {name!r}: Redis is full (its maxmemory is reached); try again later")


def _options(kind: str, max_connections: int, socket_timeout: float | None = None) -> dict[str, Any]:
    # A few quick retries ride over a restart or failover; beyond them the
    # caller gets QueueUnavailable instead of hanging. An asyncio client needs
    # asyncio's Retry: the sync one returns the coroutine unawaited and retries nothing.
    retry = redis.asyncio.retry.Retry if kind == "async" else redis.retry.Retry
    return {
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "max_connections": max_connections,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 30,
        "retry": retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None] | None:
    """(sentinel addresses, master name, db, password) of a redis+sentinel:// URL; None for another URL."""
    scheme, sep, rest = url.partition("://")
    if scheme != SENTINEL_SCHEME or not sep:
        return None
    credentials, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    master, _, db = path.partition("/")
    if not hosts or not master:
        raise ValueError(f"{mask_url(url)}: expected {SENTINEL_SCHEME}://HOST:PORT[,HOST:PORT]/MASTER[/DB]")
    addresses = [(host, int(port)) for host, _, port in (item.rpartition(":") for item in hosts.split(","))]
    password = credentials.partition(":")[2] or None
    return addresses, master, int(db or 0), password


def _sentinel(kind: str, addresses: list[tuple[str, int]]) -> Any:
    """This process's Sentinel client for these addresses (created once)."""
    key = (kind, tuple(addresses))
    if key not in _sentinels:
        module = redis.asyncio.sentinel if kind == "async" else redis.sentinel
        _sentinels[key] = module.Sentinel(addresses, socket_connect_timeout=2.0, socket_timeout=2.0)
    return _sentinels[key]


def _master(kind: str, url: str, max_connections: int) -> Any:
    parsed = parse_sentinel_url(url)
    assert parsed is not None
    addresses, master, db, password = parsed
    redis_class = redis.asyncio.Redis if kind == "async" else redis.Redis
    return _sentinel(kind, addresses).master_for(master, redis_class=redis_class, db=db, password=password,
                                                 **_options(kind, max_connections))


def async_client(url: str, max_connections: int = 32, blocking: bool = True) -> redis.asyncio.Redis:
    """An asyncio client. ``blocking``: when all connections are busy, wait (up to 30 s) for one
    instead of failing; it costs ~15 % more CPU per command, so the consumers, whose
    connection use is bounded by their concurrency, use a plain pool sized with headroom.
    Through Sentinel the pool is Sentinel's own, which does not block."""
    if parse_sentinel_url(url):
        return _master("async", url, max_connections)  # type: ignore[no-any-return]
    if blocking:
        pool = redis.asyncio.BlockingConnectionPool.from_url(url, timeout=30, **_options("async", max_connections))
    else:
        pool = redis.asyncio.ConnectionPool.from_url(url, **_options("async", max_connections))
    return redis.asyncio.Redis(connection_pool=pool)


def sync_client(url: str, max_connections: int = 8, socket_timeout: float | None = None) -> redis.Redis:
    if parse_sentinel_url(url):
        return _master("sync", url, max_connections)  # type: ignore[no-any-return]
    pool = redis.BlockingConnectionPool.from_url(url, timeout=30, **_options("sync", max_connections, socket_timeout))
    return redis.Redis(connection_pool=pool)
