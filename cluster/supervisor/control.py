"""The control API: HTTP + JSON on ``<state_dir>/control.sock`` (mode 0600), for the CLI and the workers.

Handlers change nothing themselves: each puts a command on the supervisor's
queue and answers with the result its command loop sets on the future.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from cluster.component import Component
from cluster.json_api import json_body, json_error
from cluster.supervisor.commands import Command, Reload, Scale, Stop
from cluster.config.settings import MAX_WORKERS
from cluster.workers.status_view import StatusView


class Commander(Protocol):
    """The supervisor as the control API sees it."""

    def submit(self, command: Command) -> "asyncio.Future[Any]": ...

    def status(self) -> dict[str, Any]: ...


SUPERVISOR = web.AppKey("supervisor", Commander)
# The status is built at most once a second, so it costs the same at 1 or 1,000 requests a second.
STATUS_VIEW = web.AppKey("status_view", StatusView)


def _sup(request: web.Request) -> Commander:
    return request.app[SUPERVISOR]


async def get_status(request: web.Request) -> web.Response:
    view = request.app[STATUS_VIEW]
    body = view.current() or view.store(json.dumps(_sup(request).status()).encode())
    return web.Response(body=body, content_type="application/json")


def _int_or_none(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if value > MAX_WORKERS:
        raise ValueError(f"{key} {value} is above the bound of {MAX_WORKERS} workers")
    return value


async def post_scale(request: web.Request) -> web.Response:
    data = await json_body(request)
    request.app[STATUS_VIEW].clear()
    try:
        command = Scale(
            workers=_int_or_none(data, "workers"),
            auto=bool(data.get("auto")),
            minimum=_int_or_none(data, "min"),
            maximum=_int_or_none(data, "max"),
        )
        result = await _sup(request).submit(command)
    except ValueError as exc:
        return json_error(400, str(exc))
    return web.json_response(result)


async def post_reload(request: web.Request) -> web.Response:
    request.app[STATUS_VIEW].clear()
    result = await _sup(request).submit(Reload("control API"))
    return web.json_response(result, status=200 if result["reloaded"] else 422)


async def post_stop(request: web.Request) -> web.Response:
    # Not awaited: the stop ends with this listener.
    _sup(request).submit(Stop("control API"))
    return web.json_response({"stopping": True, "pid": os.getpid()}, status=202)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)


def build_app(supervisor: Commander, components: Iterable[Component]) -> web.Application:
    app = web.Application(middlewares=[json_errors])
    app[SUPERVISOR] = supervisor
    app[STATUS_VIEW] = StatusView()
    app.router.add_get("/status", get_status)
    app.router.add_post("/scale", post_scale)
    app.router.add_post("/reload", post_reload)
    app.router.add_post("/stop", post_stop)
    for component in components:
        component.add_control_routes(app)
    return app


async def start(supervisor: Commander, components: Iterable[Component], path: Path) -> web.AppRunner:
    """Serve the control API on a unix socket only its owner may open."""
    runner = web.AppRunner(build_app(supervisor, components), access_log=None, handle_signals=False)
    await runner.setup()
    old = os.umask(0o177)
    try:
        await web.UnixSite(runner, str(path)).start()
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return runner
