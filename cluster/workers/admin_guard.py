"""The middleware that guards the built-in admin routes of every HTTP worker.

Public: /ping, /livez, /readyz and /health (trimmed to its status for a
client that is not an admin, so no host, port or error text leaks). Every
other built-in route lives under ``/api/enterprise/`` and answers only an
admin (``admin_refusal`` is None); a state-changing one also takes only
``application/json`` (a browser form cannot send it without a CORS
preflight) and refuses a foreign ``Origin``. The user's own routes are the
user's business and pass untouched.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from aiohttp import web

from cluster.config import Settings
from cluster.workers.admin_auth import AdminPolicy, admin_refusal
from cluster.workers.endpoints import SETTINGS_KEY
from cluster.workers.middleware import Handler, json_error

ADMIN_PREFIX = "/api/enterprise/"
HEALTH_PATH = "/health"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def is_admin_path(path: str) -> bool:
    """A built-in route that only an admin may use."""
    return path.startswith(ADMIN_PREFIX)


def origin_matches(origin: str | None, host: str | None) -> bool:
    """No Origin (not a browser), or an Origin naming the host the request was sent to."""
    if origin is None:
        return True
    if origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def write_refusal(method: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
    """Why a state-changing request is refused (a form post, a cross-site page), or None."""
    if method in SAFE_METHODS:
        return None
    content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return 415, "this route takes Content-Type: application/json only"
    if not origin_matches(headers.get("Origin"), headers.get("Host")):
        return 403, "the request's Origin does not match its Host"
    return None


def trimmed_health(response: web.StreamResponse) -> web.StreamResponse:
    """/health as a non-admin sees it: the overall status, nothing about hosts or errors."""
    if not isinstance(response, web.Response) or response.body is None:
        return response
    try:
        status = json.loads(response.body)["status"]
    except (ValueError, KeyError, TypeError):
        return response
    return web.json_response({"status": status}, status=response.status, content_type=response.content_type)


def _refused(status: int, reason: str) -> web.Response:
    response = json_error(status, reason)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="cluster admin"'
    return response


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path != HEALTH_PATH and not is_admin_path(path):
        return await handler(request)
    refusal = admin_refusal(request.remote, request.headers, AdminPolicy.of(request.app[SETTINGS_KEY]))
    if path == HEALTH_PATH:
        response = await handler(request)
        return response if refusal is None else trimmed_health(response)
    refusal = refusal or write_refusal(request.method, request.headers)
    if refusal is not None:
        return _refused(*refusal)
    return await handler(request)


def admin_only(settings: Callable[[], Settings], exempt: tuple[str, ...] = ()) -> Middleware:
    """A middleware for a listener whose routes are admin surfaces (the supervisor's /metrics).

    ``settings`` are read on each request, so a reload that changes the token takes effect. Paths under an
    ``exempt`` prefix are surfaces with an auth of their own (the dashboard: login, sessions, CSRF).
    """

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if exempt and request.path.startswith(exempt):
            return await handler(request)
        refusal = admin_refusal(request.remote, request.headers, AdminPolicy.of(settings()))
        if refusal is not None:
            return _refused(*refusal)
        return await handler(request)

    return guard
