"""The cache against a real redis-server: hits, TTL, tags, patterns, the stampede, Redis going away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from cluster.config.settings import CacheSettings
from cluster.resilience.cache import ResilientCache
from tests.redis_fixture import RedisServer
from tests.support import run_async

pytestmark = pytest.mark.integration


def run(url: str | None, body: Callable[[ResilientCache], Awaitable[Any]], **settings: Any) -> Any:
    async def main() -> Any:
        cache = ResilientCache()
        cache.configure(url, CacheSettings(**{"timeout": 0.5, **settings}))
        try:
            return await body(cache)
        finally:
            await cache.close()

    return run_async(main)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_hit_miss_ttl_and_explicit_invalidate(redis_url: str) -> None:
    calls: list[str] = []

    async def body(cache: ResilientCache) -> None:
        @cache.cached("prices", ttl=1, key="{symbol}")
        async def price(symbol: str) -> dict[str, Any]:
            calls.append(symbol)
            return {"symbol": symbol, "n": len(calls)}

        hits = sample("cluster_cache_requests_total", {"cache": "prices", "result": "hit"})
        assert await price("A") == {"symbol": "A", "n": 1}
        assert await price("A") == {"symbol": "A", "n": 1}
        assert sample("cluster_cache_requests_total", {"cache": "prices", "result": "hit"}) == hits + 1
        assert await price("B") == {"symbol": "B", "n": 2}
        await price.invalidate("A")  # type: ignore[attr-defined]
        assert await price("A") == {"symbol": "A", "n": 3}
        deadline = time.monotonic() + 30
        while (await price("B"))["n"] == 2:  # expires after its 1 s TTL
            assert time.monotonic() < deadline, "the TTL never expired"
            await asyncio.sleep(0.1)

    run(redis_url, body)
    assert calls[:3] == ["A", "B", "A"] and calls[3] == "B"


def test_values_are_json_in_redis_and_oversized_ones_are_not_stored(redis_url: str, redis_server: RedisServer) -> None:
    async def body(cache: ResilientCache) -> None:
        @cache.cached("docs", ttl=60, key="{size}")
        async def doc(size: int) -> str:
            return "x" * size

        await doc(10)
        await doc(5000)

    run(redis_url, body, max_value_bytes=1000)
    client = redis_server.client()
    assert client.get("cache:docs:10") == '"' + "x" * 10 + '"'
    assert client.get("cache:docs:5000") is None


def test_invalidation_by_tag_and_by_pattern(redis_url: str) -> None:
    calls: list[tuple[int, int]] = []

    async def body(cache: ResilientCache) -> None:
        @cache.cached("orders", ttl=60, key="{user}:{page}", tags=["user:{user}"])
        async def orders(user: int, page: int) -> list[int]:
            calls.append((user, page))
            return [user, page]

        for user, page in ((1, 1), (1, 2), (2, 1)):
            await orders(user, page)
        await cache.delete_tags("user:1")
        for user, page in ((1, 1), (1, 2), (2, 1)):
            await orders(user, page)
        assert calls[3:] == [(1, 1), (1, 2)]  # user 2 was still cached
        assert await cache.delete_match("orders:2:*") == 1
        await orders(2, 1)
        assert calls[-1] == (2, 1) and len(calls) == 6

    run(redis_url, body)


def test_200_concurrent_callers_of_an_expired_key_compute_it_once(redis_url: str) -> None:
    computed = 0
    misses = {"cache": "hot", "result": "miss"}
    arrived_at: float | None = None  # the miss count once every caller has missed; None: no barrier

    async def body(cache: ResilientCache) -> list[Any]:
        @cache.cached("hot", ttl=1, key="k")
        async def hot() -> dict[str, int]:
            nonlocal computed
            computed += 1
            # The barrier: the computation holds until every caller has missed and gone on to the lock.
            while arrived_at is not None and sample("cluster_cache_requests_total", misses) < arrived_at:
                await asyncio.sleep(0.01)
            return {"n": computed}

        await hot()
        deadline = time.monotonic() + 30
        while await cache.backend.get("cache:hot:k") is not None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        before = computed
        nonlocal arrived_at
        arrived_at = sample("cluster_cache_requests_total", misses) + 200
        results = await asyncio.gather(*(hot() for _ in range(200)))
        assert computed - before == 1, f"{computed - before} computations for 200 callers"
        return results

    assert {r["n"] for r in run(redis_url, body)} == {2}


def test_redis_stopped_mid_test_calls_the_function_and_counts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    calls = 0

    async def body(cache: ResilientCache) -> None:
        nonlocal calls

        @cache.cached("rates", ttl=60, key="k")
        async def rate() -> int:
            nonlocal calls
            calls += 1
            return calls

        assert await rate() == 1 and await rate() == 1
        before = sample("cluster_cache_degraded_total", {"cache": "rates"})
        server.stop()
        answers = [await rate() for _ in range(20)]
        assert answers == list(range(2, 22))  # the function ran every time; nothing raised
        assert sample("cluster_cache_degraded_total", {"cache": "rates"}) > before
        # The breaker on the cache's Redis opens (the window may still hold other tests' successes).
        for _ in range(1000):
            if cache.breaker.state.name == "open":
                break
            await rate()
        assert cache.breaker.state.name == "open"

    try:
        run(server.url, body, timeout=0.2)
    finally:
        server.stop()


def test_without_redis_configured_the_function_runs() -> None:
    async def body(cache: ResilientCache) -> list[int]:
        calls = []

        @cache.cached("none", ttl=60)
        async def f(x: int) -> int:
            calls.append(x)
            return x

        return [await f(1), await f(1), len(calls)]

    assert run(None, body) == [1, 1, 2]


def test_the_cli_shows_and_clears_by_tag_and_pattern(redis_url: str, redis_server: RedisServer, tmp_path: Path) -> None:
    import json

    from tests.support import run_cli

    async def body(cache: ResilientCache) -> None:
        @cache.cached("cli", ttl=60, key="{n}", tags=["group:{n}"])
        async def f(n: int) -> int:
            return n

        for n in (1, 2, 3):
            await f(n)

    run(redis_url, body)
    redis_server.client().set("queue-key", "untouched")
    env = {"CLUSTER_REDIS_URL": redis_url}
    state = ["--state-dir", str(tmp_path / "none")]
    status = run_cli("cache", "status", "--json", *state, env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["caches"] == {"cli": 3}
    by_tag = run_cli("cache", "clear", "--tag", "group:1", *state, env=env)
    assert by_tag.returncode == 0, by_tag.stderr
    by_pattern = run_cli("cache", "clear", "--pattern", "cli:2", *state, env=env)
    assert "cleared 1 key" in by_pattern.stdout, by_pattern.stderr
    assert json.loads(run_cli("cache", "status", "--json", *state, env=env).stdout)["caches"] == {"cli": 1}
    everything = run_cli("cache", "clear", *state, env=env)
    assert everything.returncode == 0
    assert redis_server.client().get("queue-key") == "untouched"
