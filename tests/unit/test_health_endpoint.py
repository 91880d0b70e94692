"""/health's status: the worker and its required checks decide it; informational checks never fail it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cluster.config import Settings
from cluster.workers import endpoints
from tests.support import run_async


async def required_ok() -> tuple[str, dict[str, Any]]:
    return "queues", {"status": "pass"}


async def required_down() -> tuple[str, dict[str, Any]]:
    return "queues", {"status": "fail", "output": "Redis unreachable"}


async def saturated() -> tuple[str, dict[str, Any]]:
    return "health_score", {"status": "warn", "affectsStatus": False, "level": "critical", "observedValue": 12,
                            "host_cpu": {"observedValue": 100.0, "level": "critical"}}


saturated.informational = True  # type: ignore[attr-defined]


def health(*checks) -> tuple[int, dict[str, Any]]:
    async def scenario() -> tuple[int, dict[str, Any]]:
        app = web.Application()
        app[endpoints.SETTINGS_KEY] = Settings()
        app[endpoints.HEALTH_CHECKS] = list(checks)
        endpoints.add_routes(app)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/health")
            return response.status, await response.json(content_type=None)

    return run_async(scenario)


def test_a_saturated_host_is_reported_but_the_instance_still_serves():
    status, body = health(required_ok, saturated)
    assert status == 200 and body["status"] == "pass"
    assert body["checks"]["health_score"][0]["host_cpu"]["level"] == "critical"


def test_a_required_dependency_down_fails_it():
    status, body = health(required_down, saturated)
    assert status == 503 and body["status"] == "fail"
