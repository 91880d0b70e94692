"""The toolkit in the HTTP tier, in process on a real Redis: rate-limit answers and headers, the
trusted-proxy rule, fail-open, the cache behind a handler, the 503 for a write without a primary."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from cluster.config import Settings
from tests.apps import resilient
from tests.redis_fixture import RedisServer
from tests.support import free_port, run_async
from cluster.workers.app import build_app

pytestmark = pytest.mark.integration


def serve(settings: Settings, body: Callable[[str], Awaitable[Any]]) -> Any:
    """Serve the test app built as a worker builds it; run ``body(base_url)`` against it."""

    async def main() -> Any:
        app = await build_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await body(f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return run_async(main)


def settings_for(redis_url: str | None, **extra: Any) -> Settings:
    return Settings.model_validate({"server": {"app": "tests.apps.resilient:make()", **extra.pop("server", {})},
                                    "redis": {"url": redis_url, "embedded": False}, **extra})


async def get(session: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, dict[str, str], Any]:
    async with session.get(url, headers=headers) as response:
        return response.status, dict(response.headers), await response.json()


def test_a_decorated_handler_answers_429_with_retry_after_and_ietf_headers(redis_url: str) -> None:
    async def body(base: str) -> list[tuple[int, dict[str, str], Any]]:
        async with aiohttp.ClientSession() as session:
            return [await get(session, base + "/limited") for _ in range(7)]

    answers = serve(settings_for(redis_url), body)
    assert [status for status, _, _ in answers] == [200] * 5 + [429] * 2
    status, headers, payload = answers[-1]
    assert payload["error"].startswith("Too Many Requests") and payload["limit"] == 5
    assert 1 <= int(headers["Retry-After"]) <= 10
    assert headers["RateLimit-Policy"] == '"ip";q=5;w=10'
    assert answers[0][1]["RateLimit"].startswith('"ip";r=4;t=')
    assert headers["RateLimit"].startswith('"ip";r=0;t=')


def test_rules_per_route_pattern_and_the_trusted_proxy_rule(redis_url: str) -> None:
    rules = [{"path": "/ruled/*", "limit": "2/minute", "per": "ip"}]

    async def body(base: str) -> dict[str, list[int]]:
        async with aiohttp.ClientSession() as session:
            async def statuses(n: int, **headers: str) -> list[int]:
                return [(await get(session, base + "/ruled/1", **headers))[0] for _ in range(n)]

            return {
                # Untrusted peer (server.trusted_proxies empty): a spoofed X-Forwarded-For changes nothing.
                "spoofed": await statuses(3, **{"X-Forwarded-For": "198.51.100.1"})
                + await statuses(1, **{"X-Forwarded-For": "198.51.100.2"}),
            }

    untrusted = serve(settings_for(redis_url, ratelimit={"rules": rules}), body)
    assert untrusted["spoofed"] == [200, 200, 429, 429]

    async def trusted_body(base: str) -> dict[str, list[int]]:
        async with aiohttp.ClientSession() as session:
            async def statuses(n: int, client: str) -> list[int]:
                return [(await get(session, base + "/ruled/2", **{"X-Forwarded-For": client}))[0] for _ in range(n)]

            return {"a": await statuses(3, "198.51.100.10"), "b": await statuses(2, "198.51.100.11")}

    trusted = serve(settings_for(redis_url, ratelimit={"rules": rules}, server={"trusted_proxies": ["127.0.0.1"]}),
                    trusted_body)
    assert trusted == {"a": [200, 200, 429], "b": [200, 200]}  # each client behind the proxy has its own limit


def test_redis_down_fails_open_and_is_counted(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    server.stop()
    before = REGISTRY.get_sample_value("cluster_ratelimit_redis_errors_total", {"outcome": "open"}) or 0.0

    async def body(base: str) -> list[int]:
        async with aiohttp.ClientSession() as session:
            return [(await get(session, base + "/limited"))[0] for _ in range(10)]

    assert serve(settings_for(server.url), body) == [200] * 10
    after = REGISTRY.get_sample_value("cluster_ratelimit_redis_errors_total", {"outcome": "open"}) or 0.0
    assert after - before == 10


def test_fail_closed_answers_503(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    server.stop()

    async def body(base: str) -> tuple[int, dict[str, str], Any]:
        async with aiohttp.ClientSession() as session:
            return await get(session, base + "/limited")

    status, headers, _ = serve(settings_for(server.url, ratelimit={"fail_open": False}), body)
    assert status == 503 and headers["Retry-After"] == "1"


def test_cached_handler_and_cache_endpoints(redis_url: str) -> None:
    async def body(base: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            first = (await get(session, base + "/cached/7"))[2]
            second = (await get(session, base + "/cached/7"))[2]
            status = (await get(session, base + "/api/enterprise/cache/status"))[2]
            async with session.post(base + "/api/enterprise/cache/clear", json={"pattern": "test-items:*"}) as r:
                cleared = await r.json()
            third = (await get(session, base + "/cached/7"))[2]
            breakers = (await get(session, base + "/api/enterprise/breakers"))[2]
            return {"runs": [first["computed_here"], second["computed_here"], third["computed_here"]],
                    "status": status, "cleared": cleared, "breakers": breakers}

    result = serve(settings_for(redis_url), body)
    runs = result["runs"]
    assert runs[1] == runs[0] and runs[2] == runs[0] + 1
    assert result["status"]["enabled"] is True and result["status"]["keys"] >= 1
    assert result["cleared"]["keys"] == 1
    assert {"cache-redis", "ratelimit-redis"} <= {b["name"] for b in result["breakers"]["breakers"]}


def test_a_write_without_a_primary_answers_503_with_retry_after() -> None:
    async def body(base: str) -> tuple[int, dict[str, str], Any]:
        async with aiohttp.ClientSession() as session:
            async with session.post(base + "/write") as response:
                return response.status, dict(response.headers), json.loads(await response.text())

    status, headers, payload = serve(settings_for(None), body)
    assert status == 503 and headers["Retry-After"] == "5"
    assert "primary is unavailable" in payload["error"]


def test_handlers_and_jobs_share_one_cache_object() -> None:
    from cluster.queues.context import JobContext
    from cluster.resilience.cache import CACHE
    from cluster.workers.resilience_api import CACHE_KEY

    app = asyncio.run(build_app(settings_for(None)))
    job = JobContext(id="1", name="n", priority="high", attempt=1, max_retries=0, request_id=None,
                     settings=Settings(), redis=None)  # type: ignore[arg-type]
    assert app[CACHE_KEY] is job.cache is CACHE
