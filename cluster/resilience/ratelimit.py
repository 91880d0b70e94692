"""Rate limits shared by every worker on every host, through Redis (the ``limits`` library).

``RateLimiter.hit(policy, items, key)`` counts one request against each limit of a policy
(``"10/second;1000/hour"``) for one client key and says whether it may pass, how much is left
and when the window frees up. The sliding-window counter is the default strategy: two Redis
counters per limit, no burst at a window edge, one Lua call per limit and request.

Redis down or slower than ``ratelimit.timeout``: ``hit`` returns None (fail open, the
default) or raises ``RateLimitUnavailable`` (fail closed); either way it is counted in
``cluster_ratelimit_redis_errors_total`` and logged at most once a minute, and a breaker on
the limiter's Redis skips it for a while so a dead Redis costs no connect per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import (FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter as Strategy,
                                   SlidingWindowCounterRateLimiter)
from prometheus_client import Counter

from cluster.config.settings import RateLimitSettings
from cluster.resilience.breaker import CircuitBreaker, register
from cluster.resilience.breaker_policy import REDIS_POLICY
from cluster.resilience.log_once import EveryInterval

log = logging.getLogger("resilience.ratelimit")
STRATEGIES: dict[str, type[Strategy]] = {
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
}
LIMITED = Counter("cluster_ratelimit_limited", "Requests refused by a rate limit (429)", ["policy"])
REDIS_ERRORS = Counter("cluster_ratelimit_redis_errors", "Rate-limit checks Redis could not answer in time",
                       ["outcome"])


class RateLimitUnavailable(RuntimeError):
    """Redis cannot count requests and ``ratelimit.fail_open`` is false."""


@dataclass(frozen=True)
class Decision:
    """The outcome for the tightest limit of a policy."""

    allowed: bool
    policy: str
    limit: int
    remaining: int
    window: int  # seconds
    reset_after: int  # seconds until a request would pass again / the window frees


@cache
def parse_limits(spec: str) -> tuple[RateLimitItem, ...]:
    """``"10/second;1000/hour"`` -> its limits (ValueError on a typo)."""
    return tuple(parse_many(spec))


def tightest(policy: str, stats: Sequence[tuple[RateLimitItem, bool, float, int]], now: float) -> Decision:
    """The decision to report from (limit, passed, reset_time, remaining) per limit: a refusal
    first, then the limit with the fewest requests left."""
    item, passed, reset_time, remaining = min(stats, key=lambda s: (s[1], s[3]))
    window = item.get_expiry()
    return Decision(passed, policy, item.amount, max(0, remaining), window,
                    max(1 if not passed else 0, min(window, math.ceil(reset_time - now))))


def storage_uri(url: str) -> str:
    """Our Redis URL as ``limits`` spells it: ``async+redis://``, or ``async+redis+unix://`` for a socket."""
    if url.startswith("unix://"):
        return "async+redis+" + url
    return "async+" + url


class RateLimiter:
    """One per process, on its own Redis connections; see the module docstring."""

    def __init__(self, url: str, settings: RateLimitSettings) -> None:
        self.settings = settings
        self.storage = RedisStorage(
            storage_uri(url), implementation="redispy", key_prefix="cluster-ratelimit",
            socket_timeout=settings.timeout, socket_connect_timeout=settings.timeout, max_connections=64)
        self.strategy = STRATEGIES[settings.strategy](self.storage)
        self.breaker = register(CircuitBreaker("ratelimit-redis", REDIS_POLICY))
        self._warn = EveryInterval(log, 60.0)

    async def hit(self, policy: str, items: Sequence[RateLimitItem], key: str, name: str) -> Decision | None:
        """Count one request of ``key`` under ``policy`` (its counters' id; ``name`` is what clients
        see in the headers); None when Redis could not say (fail open)."""
        if not self.breaker.allow():
            return self._unavailable("breaker open")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.timeout * 2):
                stats = []
                for item in items:
                    passed = await self.strategy.hit(item, policy, key)
                    reset_time, remaining = await self.strategy.get_window_stats(item, policy, key)
                    stats.append((item, passed, reset_time, remaining))
        except Exception as exc:  # any storage error: redis-py's, a timeout, the library's own
            self.breaker.done(True, time.perf_counter() - started)
            return self._unavailable(f"{type(exc).__name__}: {exc}")
        self.breaker.done(False, time.perf_counter() - started)
        decision = tightest(name, stats, time.time())
        if not decision.allowed:
            LIMITED.labels(policy).inc()
        return decision

    def _unavailable(self, why: str) -> None:
        outcome = "open" if self.settings.fail_open else "closed"
        REDIS_ERRORS.labels(outcome).inc()
        self._warn.warn("rate limits cannot reach Redis (%s): failing %s", why, outcome)
        if not self.settings.fail_open:
            raise RateLimitUnavailable(f"rate limits unavailable: {why}")
        return None

    async def close(self) -> None:
        await self.storage.bridge.storage.aclose()
