"""The router inside the aiohttp app: started and closed with it, a /health check, a status endpoint."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from cluster.config import Settings
from cluster.db.router import Router, router_from_settings
from cluster.workers.endpoints import HEALTH_CHECKS

DB_KEY = web.AppKey("cluster_db_router", Router)
STATUS_PATH = "/api/enterprise/replicas/status"


def health_result(status: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The /health entry for the router's status.

    Warn, never fail: a failing /health makes the supervisor reload the HTTP tier, and new
    workers cannot bring a database back. Warn when writes are refused or every replica is
    stale or down (reads then run on the fallback).
    """
    problems = []
    if status["writes_refused"]:
        problems.append(f"writes refused: {status['writes_refused']}")
    if status["replicas_unusable"]:
        problems.append(f"every read replica is stale or down; reads go to the fallback ({status['fallback']})")
    hosts = status["hosts"]
    return "database", {
        "status": "warn" if problems else "pass",
        "observedValue": sum(1 for h in hosts if h["state"] == "up"),
        "observedUnit": f"hosts up of {len(hosts)}",
        "output": "; ".join(problems) or None,
    }


async def replicas_status(request: web.Request) -> web.Response:
    router = request.app.get(DB_KEY)
    if router is None:
        return web.json_response({"enabled": False, "pid": os.getpid(), "hosts": [],
                                  "reason": "no database.url (DATABASE_URL) is configured"})
    return web.json_response({**router.status(), "pid": os.getpid()})


def install(app: web.Application, settings: Settings) -> None:
    """Add the status endpoint; with a database configured, the router, its lifecycle and its health check."""
    app.router.add_get(STATUS_PATH, replicas_status)
    router = router_from_settings(settings)
    if router is None:
        return
    app[DB_KEY] = router

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await router.start()
        yield
        await router.close()

    async def database_check() -> tuple[str, dict[str, Any]]:
        return health_result(router.status())

    database_check.check_name = "database"  # type: ignore[attr-defined]
    app.cleanup_ctx.append(lifecycle)
    app[HEALTH_CHECKS].append(database_check)
