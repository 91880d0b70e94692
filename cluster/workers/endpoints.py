"""Built-in endpoints served by every worker.

Which endpoint for whom: load balancers probe ``/readyz`` (503 while the
worker drains), an orchestrator's liveness probe ``/livez`` (the process
answers), humans and monitors read ``/health`` and ``/api/enterprise/metrics``.
``/health`` answers "can this instance serve?": its status comes from the
worker and its required dependencies only. Informational checks (host CPU,
the health score, alerts: a check with ``informational = True``) are reported
in its body with their levels but never make it fail: a busy node that serves
must not be ejected by its load balancer, which would make the others busier.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
from aiohttp import web

from cluster.config import Settings
from cluster.workers import control_client
from cluster.workers.middleware import json_error
from cluster.workers.state import WORKER_STATE
from cluster.workers.status_view import StatusView

HealthCheck = Callable[[], Awaitable[tuple[str, dict[str, Any]]]]
SETTINGS_KEY = web.AppKey("cluster_settings", Settings)
HEALTH_CHECKS = web.AppKey("cluster_health_checks", list)
_RANK = {"pass": 0, "warn": 1, "fail": 2}
_PING = b'{"ok": true}'
# The supervisor's probe: served by a middleware ahead of the user's routes, so no app can shadow it;
# the marker header tells the probe the answer is ours, not some other server's on the port.
PROBE_PATH = "/_cluster/health"
PROBE_MARKER = "X-Cluster-Health"
# The cluster status is asked of the supervisor at most once a second per worker.
_CLUSTER_VIEW = StatusView()


async def ping(request: web.Request) -> web.Response:
    return web.Response(body=_PING, content_type="application/json")


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "pid": WORKER_STATE.pid})


async def readyz(request: web.Request) -> web.Response:
    if WORKER_STATE.draining:
        return web.json_response({"ready": False, "reason": "draining", "pid": WORKER_STATE.pid}, status=503)
    return web.json_response({"ready": True, "pid": WORKER_STATE.pid})


async def _worker_check() -> tuple[str, dict[str, Any]]:
    state = WORKER_STATE
    return "worker", {
        "componentId": str(state.pid),
        "status": "warn" if state.draining else "pass",
        "observedValue": state.in_flight,
        "observedUnit": "requests in flight",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


async def _run_check(check: HealthCheck, timeout: float) -> tuple[str, dict[str, Any]]:
    try:
        return await asyncio.wait_for(check(), timeout)
    except Exception as exc:  # a failing check is a result, not an error of /health
        name = getattr(check, "check_name", getattr(check, "__name__", "check"))
        return name, {"status": "fail", "output": f"{type(exc).__name__}: {exc}"}


async def health(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    checks = [_worker_check, *request.app[HEALTH_CHECKS]]
    results = await asyncio.gather(*(_run_check(c, settings.health.timeout) for c in checks))
    required = [r for c, (_, r) in zip(checks, results) if not getattr(c, "informational", False)]
    status = max((r["status"] for r in required), key=lambda s: _RANK.get(s, 2))
    body = {
        "status": status,
        "serviceId": "cluster",
        "checks": {name: [result] for name, result in results},
    }
    response = web.json_response(
        body,
        status=503 if status == "fail" else 200,
        content_type="application/health+json",
    )
    response.headers[PROBE_MARKER] = str(WORKER_STATE.pid)
    return response


async def worker_status(request: web.Request) -> web.Response:
    state = WORKER_STATE
    proc = psutil.Process(state.pid)
    with proc.oneshot():
        memory = proc.memory_info().rss
        cpu = proc.cpu_times()
    return web.json_response({
        "pid": state.pid,
        "uptime": round(time.time() - state.started, 3),
        "requests": state.requests,
        "in_flight": state.in_flight,
        "draining": state.draining,
        "rss_bytes": memory,
        "cpu_seconds": round(cpu.user + cpu.system, 3),
    })


async def cluster_status(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    body = _CLUSTER_VIEW.current()
    if body is None:
        try:
            status = await control_client.call(settings.server.state_dir, "GET", "/status")
        except control_client.ControlError as exc:
            return json_error(503, "supervisor unavailable", detail=str(exc))
        body = _CLUSTER_VIEW.store(json.dumps(status).encode())
    return web.Response(body=body, content_type="application/json")


def add_routes(app: web.Application) -> None:
    """Register the built-in endpoints on an application (the probe path first: see ``workers.app``)."""
    app.router.add_get(PROBE_PATH, health)
    app.router.add_get("/ping", ping)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/health", health)
    app.router.add_get("/api/enterprise/status", worker_status)
    app.router.add_get("/api/enterprise/cluster/status", cluster_status)
