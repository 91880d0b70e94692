"""The workers' monitoring surface: the metrics middleware, the alert endpoints, the health-score check.

The figures live in the supervisor; these endpoints read them over the control
socket. /health reads the score at most once per ``SCORE_TTL`` per worker so
it stays cheap under a load balancer's probes.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from workers import control_client
from workers.endpoints import HEALTH_CHECKS, SETTINGS_KEY
from workers.http_metrics import RequestTally, metrics_middleware, publisher
from workers.middleware import json_error

SCORE_TTL = 2.0
_HEALTH_STATUS = {"excellent": "pass", "good": "pass", "degraded": "warn", "critical": "fail"}


async def _from_supervisor(request: web.Request, method: str, path: str) -> web.Response:
    state_dir = request.app[SETTINGS_KEY].server.state_dir
    try:
        body = await control_client.call(state_dir, method, path)
    except control_client.ControlError as exc:
        status = 404 if exc.status == 404 else 503
        return json_error(status, "no such alert" if status == 404 else "supervisor unavailable", detail=str(exc))
    return web.json_response(body)


async def get_metrics(request: web.Request) -> web.Response:
    return await _from_supervisor(request, "GET", "/monitoring")


async def get_alerts(request: web.Request) -> web.Response:
    return await _from_supervisor(request, "GET", "/monitoring/alerts")


async def resolve_alert(request: web.Request) -> web.Response:
    alert_id = request.match_info["alert_id"]
    if not alert_id.isalnum() or len(alert_id) > 64:
        return json_error(400, "alert id must be alphanumeric (at most 64 characters)")
    return await _from_supervisor(request, "POST", f"/monitoring/alerts/{alert_id}/resolve")


class ScoreCheck:
    """A /health check from the supervisor's health score, cached for ``SCORE_TTL`` seconds."""

    check_name = "health_score"

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def _read(self) -> dict[str, Any]:
        try:
            snapshot = await control_client.call(self.state_dir, "GET", "/monitoring", timeout=2.0)
        except control_client.ControlError as exc:
            return {"status": "warn", "output": f"score unavailable: {exc}"}
        health = snapshot.get("health", {})
        return {
            "status": _HEALTH_STATUS.get(health.get("level"), "warn"),
            "observedValue": health.get("score"),
            "observedUnit": "score (0-100)",
            "level": health.get("level"),
            "alerts": snapshot.get("alerts", {}),
        }

    async def __call__(self) -> tuple[str, dict[str, Any]]:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > SCORE_TTL:
            self._cached = (now, await self._read())
        return self.check_name, self._cached[1]


def install(app: web.Application) -> None:
    """Count every request (outermost middleware) and add the monitoring endpoints and check."""
    tally = RequestTally()
    app.middlewares.insert(0, metrics_middleware(tally))
    app.cleanup_ctx.append(publisher(tally))
    app.router.add_get("/api/enterprise/metrics", get_metrics)
    app.router.add_get("/api/enterprise/alerts", get_alerts)
    app.router.add_post("/api/enterprise/alerts/{alert_id}/resolve", resolve_alert)
    app[HEALTH_CHECKS].append(ScoreCheck(app[SETTINGS_KEY].server.state_dir))
