"""Builds the application a worker serves: the user's app or the built-in one, plus our endpoints."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from typing import Any

from aiohttp import web

from config import Settings
from workers import endpoints, monitoring, queues_api
from workers.access_log import JsonAccessLogger
from workers import db_routes, resilience_api
from workers.middleware import request_middleware
from workers.state import WORKER_STATE

log = logging.getLogger("workers.app")
ACCEPT_DRAIN = 0.5


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


async def build_app(settings: Settings) -> web.Application:
    """The application with our middleware and built-in endpoints installed."""
    if settings.server.app:
        app = await load_user_app(settings.server.app)
    else:
        app = web.Application(client_max_size=settings.server.max_body_size)
    app.middlewares.insert(0, request_middleware)
    app[endpoints.SETTINGS_KEY] = settings
    app[endpoints.HEALTH_CHECKS] = []
    endpoints.add_routes(app)
    monitoring.install(app)
    db_routes.install(app, settings)
    queues_api.install(app, settings)
    resilience_api.install(app, settings)
    return app


async def build_runner(settings: Settings) -> web.AppRunner:
    """The runner gunicorn's aiohttp worker serves; it carries our JSON access log."""
    app = await build_app(settings)
    return DrainingRunner(
        app,
        handle_signals=False,
        access_log_class=JsonAccessLogger,
        access_log=logging.getLogger("cluster.access") if settings.server.access_log else None,
        keepalive_timeout=settings.server.keepalive,
        shutdown_timeout=settings.server.graceful_timeout * 0.95,
    )
