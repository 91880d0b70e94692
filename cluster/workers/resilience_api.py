"""The resilience toolkit inside a worker: the cache and rate limits set up with the app, their
admin endpoints, and a write refused for want of a primary answered 503 with Retry-After.

GET  /api/enterprise/cache/status    the cache's state and key count
POST /api/enterprise/cache/clear     {"tag": T} | {"pattern": P} | {} (every cache key)
GET  /api/enterprise/breakers        every circuit breaker of this worker
(the security middleware guards /api/enterprise/*)
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from aiohttp import web

from cluster.config import Settings
from cluster.db.errors import PrimaryUnavailable
from cluster.resilience.breaker import CircuitOpen, all_breakers
from cluster.resilience.cache import CACHE, ResilientCache
from cluster.workers import ratelimit
from cluster.workers.middleware import Handler, json_error

log = logging.getLogger("workers.resilience")
CACHE_KEY = web.AppKey("cache", ResilientCache)
PRIMARY_RETRY_AFTER = 5


@web.middleware
async def unavailable_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A write without a primary, or a call refused by an open breaker, that the handler let through: 503."""
    try:
        return await handler(request)
    except PrimaryUnavailable as exc:
        log.warning("503 for %s %s: %s", request.method, request.path, exc)
        response = json_error(503, f"the database primary is unavailable: {exc}")
        response.headers["Retry-After"] = str(PRIMARY_RETRY_AFTER)
        return response
    except CircuitOpen as exc:
        response = json_error(503, str(exc), breaker=exc.name)
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response


async def cache_status(request: web.Request) -> web.Response:
    return web.json_response({**await request.app[CACHE_KEY].status(), "pid": os.getpid(), "time": time.time()})


async def cache_clear(request: web.Request) -> web.Response:
    cache = request.app[CACHE_KEY]
    body: Any = await request.json() if request.can_read_body else {}
    if not isinstance(body, dict) or set(body) - {"tag", "pattern"} or len(body) > 1:
        return json_error(400, 'body: {"tag": T} or {"pattern": P} or {} (every cache key)')
    if not cache.ready:
        return json_error(503, "the cache is off (no Redis)")
    if "tag" in body:
        await cache.delete_tags(str(body["tag"]))
        return web.json_response({"cleared": {"tag": body["tag"]}})
    deleted = await cache.delete_match(str(body.get("pattern") or "*"))
    return web.json_response({"cleared": {"pattern": body.get("pattern") or "*"}, "keys": deleted})


async def breakers(request: web.Request) -> web.Response:
    return web.json_response({"pid": os.getpid(), "breakers": [b.status() for b in all_breakers()]})


def install(app: web.Application, settings: Settings) -> None:
    """Rate limits and the 503 middleware, the cache on the cluster's Redis, the admin routes."""
    url = settings.redis.url
    app.middlewares.append(unavailable_middleware)
    ratelimit.install(app, settings, settings.ratelimit.url or url)
    app[CACHE_KEY] = CACHE

    async def cache_lifecycle(_: web.Application) -> Any:
        CACHE.configure(settings.cache.url or url, settings.cache)
        yield
        await CACHE.close()

    app.cleanup_ctx.append(cache_lifecycle)
    app.router.add_get("/api/enterprise/cache/status", cache_status)
    app.router.add_post("/api/enterprise/cache/clear", cache_clear)
    app.router.add_get("/api/enterprise/breakers", breakers)
