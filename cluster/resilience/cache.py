"""The Redis cache: a decorator for async functions, invalidation by key, tag and pattern.

    from cluster.resilience.cache import cached

    @cached("quotes", ttl=30, key="{symbol}", tags=["quote:{symbol}"])
    async def quote(symbol: str) -> dict: ...

    await quote.invalidate("PETR4")            # after a write: that one key
    await CACHE.delete_tags("quote:PETR4")     # every key tagged so
    await CACHE.delete_match("cache:quotes:*") # every key of the cache

Built on cashews (asyncio on redis-py), set up here as the runtime needs it:
- its own connection pool (``cache.pool_size``), apart from the queues' pool, and JSON values:
  nothing read from Redis is unpickled;
- stampede protection: in a process, concurrent callers of one key share one call; across
  processes, the first computes under a Redis lock (held at most ``lock_ttl``) while the
  others poll the lock every 10 ms, then read its value;
- degraded mode: a Redis command that fails or takes longer than ``cache.timeout`` makes the
  call a miss, the function runs, ``cluster_cache_degraded_total`` grows and a warning is
  logged once a minute; a breaker on the cache's Redis then skips Redis for a while, so a
  dead Redis costs no connect attempt per call. The cache never fails a request.

One object per process (``CACHE``): handlers find it in ``request.app[CACHE_KEY]``, jobs in
``current_job().cache``; ``configure(url, settings)`` points it at Redis when the process starts.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from cashews import Cache as Cashews
from cashews.commands import Command
from cashews.decorators import locked, thunder_protection
from cashews.exceptions import CacheBackendInteractionError
from cashews.key import get_cache_key, get_cache_key_template
from prometheus_client import Counter, Histogram

from cluster.config.settings import CacheSettings
from cluster.resilience.breaker import CircuitBreaker, register
from cluster.resilience.breaker_policy import REDIS_POLICY
from cluster.resilience.log_once import EveryInterval

log = logging.getLogger("resilience.cache")
P = ParamSpec("P")
R = TypeVar("R")
PREFIX = "cache"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

REQUESTS = Counter("cluster_cache_requests", "Cache lookups by cache name and result (hit or miss)",
                   ["cache", "result"])
DEGRADED = Counter("cluster_cache_degraded", "Cache commands that failed or timed out (the function ran "
                   "without the cache)", ["cache"])
SKIPPED = Counter("cluster_cache_values_skipped", "Values not stored: too large or not JSON", ["cache", "why"])
LATENCY = Histogram("cluster_cache_command_seconds", "Latency of cache commands on Redis", ["cache", "command"],
                    buckets=LATENCY_BUCKETS)
# Commands whose answer on failure makes the call go on without the cache.
# SET_LOCK answers True: the caller computes (its SET may have reached Redis with the answer
# lost; were it told False it would wait for a lock that only its own unlock releases).
_FALLBACK: dict[Command, Any] = {Command.DELETE: 0, Command.DELETE_MANY: None, Command.SET_LOCK: True,
                                 Command.IS_LOCKED: False, Command.GET_MANY: ()}
_MISS = object()
LOCK_POLL = 0.01  # a waiter retries the lock this often (cashews' default, 0, spins on Redis)


def cache_name(key: str) -> str:
    """The cache a key belongs to: ``cache:<name>:...`` -> name."""
    parts = key.split(":", 2)
    return parts[1] if len(parts) > 2 and parts[0] == PREFIX else "-"


class ResilientCache:
    """The process's cache; see the module docstring."""

    def __init__(self) -> None:
        self.backend = Cashews()
        self.settings = CacheSettings()
        self.url: str | None = None
        self.breaker = register(CircuitBreaker("cache-redis", REDIS_POLICY))
        self._warn = EveryInterval(log, 60.0)
        self.backend.add_middleware(self._guard)

    @property
    def ready(self) -> bool:
        return self.url is not None

    def configure(self, url: str | None, settings: CacheSettings) -> None:
        """Point the cache at Redis; without a URL (or disabled) every call runs its function."""
        self.settings = settings
        if not url or not settings.enabled:
            self.url = None
            return
        timeout = settings.timeout
        try:
            # The address as a parameter: cashews picks its backend by the URL's scheme and knows
            # no unix:// (the embedded redis-server's socket); redis-py, underneath, does.
            self.backend.setup("redis://", address=url, pickle_type="json", suppress=False, client_side=False,
                               socket_timeout=timeout, socket_connect_timeout=timeout,
                               max_connections=settings.pool_size, wait_for_connection_timeout=timeout,
                               client_name="cluster-cache")
        except Exception:  # a cache that cannot be set up is a cache that is off, never a dead process
            log.exception("cannot set up the cache on %s: functions run without it", url.split("@")[-1])
            self.url = None
            return
        self.url = url

    async def close(self) -> None:
        if self.ready:
            await self.backend.close()

    async def _guard(self, call: Callable[..., Awaitable[Any]], cmd: Command, backend: Any, *args: Any,
                     **kwargs: Any) -> Any:
        """Every command: metrics, the value checks, and a fallback answer when Redis fails."""
        key = str(kwargs.get("key") or kwargs.get("pattern") or (args[0] if args else ""))
        name = cache_name(key)
        if cmd is Command.SET and not self._storable(name, kwargs.get("value")):
            return None
        if not self.breaker.allow():
            DEGRADED.labels(name).inc()
            return kwargs.get("default") if cmd is Command.GET else _FALLBACK.get(cmd)
        started = time.perf_counter()
        try:
            result = await call(*args, **kwargs)
        except CacheBackendInteractionError as exc:
            self.breaker.done(True, time.perf_counter() - started)
            DEGRADED.labels(name).inc()
            self._warn.warn("cache Redis unreachable or slow (%s): calls run without the cache",
                            type(exc.__cause__ or exc).__name__, cache=name, command=cmd.value)
            return kwargs.get("default") if cmd is Command.GET else _FALLBACK.get(cmd)
        elapsed = time.perf_counter() - started
        self.breaker.done(False, elapsed)
        LATENCY.labels(name, cmd.value).observe(elapsed)
        return result

    def _storable(self, name: str, value: Any) -> bool:
        try:
            size = len(json.dumps(value))
        except (TypeError, ValueError):
            SKIPPED.labels(name, "not_json").inc()
            self._warn.warn("cache %s: a value is not JSON (not stored)", name, cache=name)
            return False
        if size > self.settings.max_value_bytes:
            SKIPPED.labels(name, "too_large").inc()
            self._warn.warn("cache %s: a value of %d bytes is over cache.max_value_bytes (not stored)",
                            name, size, cache=name)
            return False
        return True

    def cached(self, name: str, ttl: float, key: str | None = None, tags: Sequence[str] = (),
               lock: bool = True, lock_ttl: float = 10.0
               ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Cache an async function's JSON result for ``ttl`` seconds under ``cache:<name>:<key>``.

        ``key`` is a template over the arguments (``"{user_id}:{page}"``); by default every
        argument is in it. ``tags`` are templates too; ``lock`` is the stampede protection,
        its Redis lock expiring after ``lock_ttl`` s should its holder die mid-computation.
        """
        if ":" in name or not name:
            raise ValueError(f"cache name {name!r}: non-empty, no ':'")
        prefix = f"{PREFIX}:{name}"

        def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            template = get_cache_key_template(func, key=key, prefix=prefix)
            compute = self.backend(ttl=ttl, key=key, prefix=prefix, tags=list(tags))(func)
            if lock:
                # What cashews' lock=True does, composed here so that a hit costs one GET (its
                # lock=True takes the lock on every call, hit or not), the lock is bounded and
                # polled gently, and its key is the full cache key (cashews' would be the same
                # for two caches keyed "{n}"). Under the lock, the value is read again first.
                compute = thunder_protection(key=template)(
                    locked(self.backend, key=template, ttl=min(ttl, lock_ttl), wait=True,
                           check_interval=LOCK_POLL)(compute))
            counters: dict[str, Any] = {}  # made on first use: no metrics file at import

            @functools.wraps(func)
            async def call(*args: P.args, **kwargs: P.kwargs) -> R:
                if not self.ready:
                    return await func(*args, **kwargs)
                value = await self.backend.get(get_cache_key(func, template, args, kwargs), default=_MISS)
                result = "miss" if value is _MISS else "hit"
                counter = counters.get(result) or counters.setdefault(result, REQUESTS.labels(name, result))
                counter.inc()
                if value is _MISS:
                    return await compute(*args, **kwargs)
                return value  # type: ignore[no-any-return]

            async def invalidate(*args: Any, **kwargs: Any) -> None:
                """Forget the value cached for these arguments."""
                if self.ready:
                    await self.backend.delete(get_cache_key(func, template, args, kwargs))

            call.invalidate = invalidate  # type: ignore[attr-defined]
            return call

        return decorate

    async def delete_tags(self, *tags: str) -> None:
        if self.ready:
            await self.backend.delete_tags(*tags)

    async def delete_match(self, pattern: str) -> int:
        """Delete the cache's keys matching a glob; only keys under ``cache:`` are ever touched."""
        if not self.ready:
            return 0
        if not pattern.startswith(f"{PREFIX}:"):
            pattern = f"{PREFIX}:{pattern}"
        keys = [key async for key in self.backend.scan(pattern)]
        if keys:
            await self.backend.delete_many(*keys)
        return len(keys)

    async def status(self) -> dict[str, Any]:
        """Whether the cache is on, its Redis reachable, and its keys per cache name (one SCAN)."""
        per_cache: dict[str, int] | None = None
        reachable = None
        if self.ready:
            reachable = bool(await self.backend.ping())
            per_cache = {}
            async for key in self.backend.scan(f"{PREFIX}:*"):
                name = cache_name(key.decode() if isinstance(key, bytes) else key)
                per_cache[name] = per_cache.get(name, 0) + 1
        return {"enabled": self.ready, "reachable": reachable,
                "keys": None if per_cache is None else sum(per_cache.values()), "caches": per_cache,
                "breaker": self.breaker.state.name, "timeout": self.settings.timeout,
                "max_value_bytes": self.settings.max_value_bytes}


CACHE = ResilientCache()
cached = CACHE.cached
