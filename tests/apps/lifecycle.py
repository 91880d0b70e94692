"""Apps for the lifecycle tests: one with its own /ping and /health, and the bad starts."""

from __future__ import annotations

import os

from aiohttp import web


async def _ping(request: web.Request) -> web.Response:
    return web.json_response({"pong": "from the app"})


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="the app's own health page")


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await request.read())})


def own_routes() -> web.Application:
    """/health registered first (it would shadow ours), /ping with add_get (GET and HEAD)."""
    app = web.Application()
    app.router.add_get("/health", _health)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/ping", _ping)
    return app


def raising() -> web.Application:
    raise RuntimeError("the app cannot find its settings")


not_an_app = {"routes": []}


def fails_in_workers() -> web.Application:
    """Builds in preflight, fails in every HTTP worker: the first boot failure path."""
    if os.environ.get("CLUSTER_PROCESS_ROLE") == "http-arbiter":
        raise RuntimeError("no database in the workers")
    return web.Application()


def breaks_on_marker() -> web.Application:
    """Builds until the file named by LIFECYCLE_BREAK_FILE exists: a crash loop after a good start."""
    if os.path.exists(os.environ["LIFECYCLE_BREAK_FILE"]):
        raise RuntimeError("broken after a good start")
    return web.Application()
