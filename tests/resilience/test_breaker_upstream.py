"""A breaker in front of a real HTTP upstream (a local aiohttp server that fails on demand):
closed -> open on the failure rate -> refusals that never reach the upstream -> half-open
trials -> closed once the upstream is healthy; transitions in the metrics."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from cluster.resilience.breaker import CircuitBreaker, CircuitOpen
from cluster.resilience.breaker_policy import BreakerPolicy
from tests.support import free_port, run_async

pytestmark = pytest.mark.integration


def transitions(name: str, to: str) -> float:
    return REGISTRY.get_sample_value("cluster_breaker_transitions_total", {"breaker": name, "to": to}) or 0.0


def test_breaker_transitions_driven_by_a_failing_upstream() -> None:
    upstream = {"failing": False, "hits": 0}
    breaker = CircuitBreaker("test-upstream", BreakerPolicy(failure_rate=0.5, minimum_calls=4, window=30,
                                                            open_wait=0.3, half_open_calls=2))

    async def handler(request: web.Request) -> web.Response:
        upstream["hits"] += 1
        return web.Response(status=503 if upstream["failing"] else 200)

    async def main() -> dict[str, object]:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        seen: list[str] = []

        @breaker
        async def call(session: aiohttp.ClientSession) -> int:
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                response.raise_for_status()
                return response.status

        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(5):
                    assert await call(session) == 200
                upstream["failing"] = True
                while breaker.state.name != "open":
                    with pytest.raises(aiohttp.ClientResponseError):
                        await call(session)
                seen.append(breaker.state.name)
                hits = upstream["hits"]
                with pytest.raises(CircuitOpen) as refused:
                    await call(session)
                assert "test-upstream" in str(refused.value) and upstream["hits"] == hits  # never reached it
                upstream["failing"] = False
                deadline = time.monotonic() + 30
                while breaker.state.name != "closed":  # trials pass once the wait is over
                    assert time.monotonic() < deadline, breaker.status()
                    try:
                        await call(session)
                        seen.append(breaker.state.name)
                    except CircuitOpen:
                        await asyncio.sleep(0.05)
                async with breaker.call():  # the context-manager form, closed again
                    pass
        finally:
            await runner.cleanup()
        return {"seen": seen}

    before = {to: transitions("test-upstream", to) for to in ("open", "half_open", "closed")}
    result = run_async(main)
    assert result["seen"][0] == "open" and result["seen"][-2:] == ["half_open", "closed"]
    assert {to: transitions("test-upstream", to) - before[to] for to in before} == \
        {"open": 1, "half_open": 1, "closed": 1}
