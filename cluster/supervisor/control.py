"""The control API: HTTP + JSON on ``<state_dir>/control.sock`` (mode 0600), for the CLI and the workers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from config.settings import MAX_WORKERS
from workers.status_view import StatusView

if TYPE_CHECKING:
    from cluster.supervisor.core import Supervisor

SUPERVISOR = web.AppKey("supervisor", object)
# The status is built at most once a second, so it costs the same at 1 or 1,000 requests a second.
STATUS_VIEW = web.AppKey("status_view", StatusView)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(reason=f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return data


def _sup(request: web.Request) -> "Supervisor":
    return request.app[SUPERVISOR]  # type: ignore[return-value]


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
    data = await _body(request)
    request.app[STATUS_VIEW].clear()
    try:
        result = _sup(request).scale(
            workers=_int_or_none(data, "workers"),
            auto=bool(data.get("auto")),
            minimum=_int_or_none(data, "min"),
            maximum=_int_or_none(data, "max"),
        )
    except ValueError as exc:
        return _error(400, str(exc))
    return web.json_response(result)


async def post_reload(request: web.Request) -> web.Response:
    request.app[STATUS_VIEW].clear()
    result = await _sup(request).reload()
    return web.json_response(result, status=200 if result["reloaded"] else 422)


async def post_stop(request: web.Request) -> web.Response:
    supervisor = _sup(request)
    supervisor.request_stop("control API")
    return web.json_response({"stopping": True, "pid": os.getpid()}, status=202)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)


def build_app(supervisor: "Supervisor") -> web.Application:
    app = web.Application(middlewares=[json_errors])
    app[SUPERVISOR] = supervisor
    app[STATUS_VIEW] = StatusView()
    app.router.add_get("/status", get_status)
    app.router.add_post("/scale", post_scale)
    app.router.add_post("/reload", post_reload)
    app.router.add_post("/stop", post_stop)
    for component in supervisor.components:
        component.add_control_routes(app)
    return app


async def start(supervisor: "Supervisor", path: Path) -> web.AppRunner:
    """Serve the control API on a unix socket only its owner may open."""
    runner = web.AppRunner(build_app(supervisor), access_log=None, handle_signals=False)
    await runner.setup()
    old = os.umask(0o177)
    try:
        await web.UnixSite(runner, str(path)).start()
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return runner
