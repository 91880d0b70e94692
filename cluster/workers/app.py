"""Builds the application a worker serves: the user's app or the built-in one, plus our endpoints."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server
from yarl import URL

from cluster.config import Settings
from cluster.config import state_files
from cluster.safe_files import write_file
from cluster.observability.logs import new_request_id
from cluster.workers import endpoints, monitoring, queues_api
from cluster.workers.access_log import JsonAccessLogger
from cluster.workers import db_routes, resilience_api
from cluster.workers.admin_auth import AdminPolicy, admin_refusal
from cluster.workers.admin_guard import admin_guard, trimmed_health
from cluster.workers.ratelimit import rate_limit_middleware
from cluster.workers.middleware import BODY_LIMIT, BODY_TIMEOUT, REQUEST_ID_HEADER, Handler, json_error, \
    request_middleware
from cluster.workers.state import WORKER_STATE

log = logging.getLogger("workers.app")
ACCEPT_DRAIN = 0.5
SHADOWED = web.AppKey("cluster_shadowed_builtins", list)


class AppLoadError(Exception):
    """APP could not be imported or did not give an aiohttp Application."""


async def load_user_app(spec: str) -> web.Application:
    """Import ``module:app`` or call ``module:factory()`` (sync or async)."""
    module_name, _, attr = spec.partition(":")
    call = attr.endswith("()")
    attr = attr.removesuffix("()")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import {module_name!r} for app {spec!r}: {exc}") from exc
    try:
        target: Any = getattr(module, attr)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {attr!r} (app {spec!r})") from None
    if call:
        target = target()
        if inspect.isawaitable(target):
            target = await target
    if not isinstance(target, web.Application):
        raise AppLoadError(f"app {spec!r} gave {type(target).__name__}, not an aiohttp.web.Application")
    return target


def failure_line(exc: BaseException) -> str:
    """One line for a failure: the root exception's last line and the file:line it was raised at.

    Frames of the import machinery and of this loader are left out, so the
    place named is in the user's code (none for a module that does not exist).
    """
    root = exc
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    frames = [f for f in traceback.extract_tb(root.__traceback__)
              if not f.filename.startswith("<frozen") and "importlib" not in f.filename and f.filename != __file__]
    # An AppLoadError is raised here, about the APP spec: its message says it all.
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames and not isinstance(root, AppLoadError) else ""
    if isinstance(root, AppLoadError):
        last = str(root)
    else:
        last = traceback.format_exception_only(type(root), root)[-1].strip()
    if root is not exc:
        last = str(exc) if str(root) in str(exc) else f"{exc}: {last}"
    return f"{last}{where}"


def record_boot_failure(state_dir: str, exc: BaseException) -> None:
    """Leave the cause where the supervisor reads it when the HTTP tier dies before it is ready."""
    path = state_files.BOOT_ERROR.path(state_dir)
    try:
        write_file(path, failure_line(exc) + "\n")  # never through a link planted in the state dir
    except OSError:
        log.warning("cannot write %s", path)


@dataclass(frozen=True)
class _RouteProbe:
    """The two attributes a resource reads to resolve a request."""

    method: str
    rel_url: URL


async def _served_by(resources: list[Any], method: str, path: str) -> bool:
    for resource in resources:
        try:
            match, _ = await resource.resolve(_RouteProbe(method, URL.build(path=path, encoded=True)))
        except Exception:  # a sub-app matching on more than the path (domain, headers): cannot tell
            continue
        if match is not None and getattr(match, "http_exception", None) is None:
            return True
    return False


async def shadowed_builtins(app: web.Application, first: int) -> list[str]:
    """The built-in routes (``METHOD path``) that a route of the user's app, registered earlier, wins."""
    resources = list(app.router.resources())
    user, ours = resources[:first], resources[first:]
    shadowed = []
    for resource in ours:
        for route in resource:
            if route.method != "HEAD" and await _served_by(user, route.method, resource.canonical):
                shadowed.append(f"{route.method} {resource.canonical}")
    return shadowed


@web.middleware
async def probe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The supervisor's probe, answered whatever route of the user's app matched the path.

    The full document (hosts and all) only for an admin client, as on /health: the supervisor probes from loopback.
    """
    if request.path == endpoints.PROBE_PATH and request.method in ("GET", "HEAD"):
        response = await endpoints.health(request)
        refusal = admin_refusal(request.remote, request.headers, AdminPolicy.of(request.app[endpoints.SETTINGS_KEY]))
        return response if refusal is None else trimmed_health(response)
    return await handler(request)


class JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, with its own error answers (parser errors, 500s) in our JSON form.

    A malformed request is the client's mistake: logged at INFO, not as a server error with a traceback.
    """

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:
            log.info("bad request from %s: %s", request.remote, message or exc,
                     extra={"status": status, "peer": request.remote})
        writer: AbstractStreamWriter = request.writer
        if writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        detail = {"detail": message} if message and status < 500 else {}
        response = json_error(status, HTTPStatus(status).phrase, **detail)
        response.headers[REQUEST_ID_HEADER] = new_request_id()
        response.force_close()
        return response


    def log_exception(self, *args: Any, **kw: Any) -> None:
        # A body the watchdog timed out (workers.middleware.watch_body) fails aiohttp's read of the
        # rest of it after the 408 was sent: the connection is closed, as it should be, not an error.
        if isinstance(kw.get("exc_info"), web.HTTPRequestTimeout):
            log.info("closed a connection whose request body stalled")
            return
        super().log_exception(*args, **kw)


class JsonErrorServer(Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class DrainingRunner(web.AppRunner):
    """An AppRunner that stops accepting, waits ``ACCEPT_DRAIN`` seconds, then shuts down as usual.

    aiohttp's cleanup closes every connection that is not inside a request
    right after it stops listening. A connection this worker accepted a
    moment earlier, whose request bytes have not been read yet, counts as
    idle and is closed unanswered: a request lost on every reload or
    scale-down. Other workers keep accepting from the shared socket
    meanwhile, so the pause costs no capacity.
    """

    async def cleanup(self) -> None:
        WORKER_STATE.draining = True
        for site in list(self.sites):
            await site.stop()
        await asyncio.sleep(ACCEPT_DRAIN)
        await super().cleanup()

    async def setup(self) -> None:
        try:
            await super().setup()
        except Exception as exc:  # the app's on_startup: the worker cannot boot
            record_boot_failure(self.app[endpoints.SETTINGS_KEY].server.state_dir, exc)
            raise

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # The same server, whose connections answer aiohttp's own errors in JSON.
        server.__class__ = JsonErrorServer
        return server


async def build_app(settings: Settings) -> web.Application:
    """The application with our middleware and built-in endpoints installed."""
    if settings.server.app:
        app = await load_user_app(settings.server.app)
        # aiohttp takes the limit only in Application(); the user's app was built with its default.
        app._client_max_size = settings.server.max_body_size
    else:
        app = web.Application(client_max_size=settings.server.max_body_size)
    # Ours first, in this order: ids and metrics, the supervisor's probe (never limited nor guarded),
    # rate limits (before the admin check, so guessing tokens is limited too), the admin guard.
    app.middlewares.insert(0, request_middleware)
    app.middlewares.insert(1, probe_middleware)
    app.middlewares.insert(2, rate_limit_middleware)
    app.middlewares.insert(3, admin_guard)
    app[endpoints.SETTINGS_KEY] = settings
    app[endpoints.HEALTH_CHECKS] = []
    app[BODY_TIMEOUT] = settings.server.body_timeout
    app[BODY_LIMIT] = settings.server.max_body_size
    # The user's routes are registered first, so they win at resolve time. aiohttp adds
    # a route to the last resource when the path is the same (and raises when the method
    # is taken): the probe path goes first, so no built-in ever lands on a user's resource.
    first = len(app.router.resources())
    endpoints.add_routes(app)
    monitoring.install(app)
    db_routes.install(app, settings)
    queues_api.install(app, settings)
    app[SHADOWED] = await shadowed_builtins(app, first)
    for route in app[SHADOWED]:
        log.debug("built-in %s is shadowed by the app's own route", route)
    resilience_api.install(app, settings)
    return app


async def build_runner(settings: Settings) -> web.AppRunner:
    """The runner gunicorn's aiohttp worker serves; it carries our JSON access log."""
    try:
        app = await build_app(settings)
    except Exception as exc:
        record_boot_failure(settings.server.state_dir, exc)
        raise
    return DrainingRunner(
        app,
        handle_signals=False,
        access_log_class=JsonAccessLogger,
        access_log=logging.getLogger("cluster.access") if settings.server.access_log else None,
        keepalive_timeout=settings.server.keepalive,
        shutdown_timeout=settings.server.graceful_timeout * 0.95,
    )
