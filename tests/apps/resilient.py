"""A test app using the resilience toolkit: a cached handler, a rate-limited one, a write without a primary.

``GET /limited`` is limited by ``@rate_limit`` (5 per 10 s per client IP); ``GET /cached/{n}``
computes through ``request.app[CACHE_KEY]``-backed ``@cached`` and says how many times it ran
in this worker; ``GET /plain`` is the same handler with neither (the benchmark's baseline);
``POST /write`` raises PrimaryUnavailable as a handler that does not catch it would.
"""

from __future__ import annotations

import os

from aiohttp import web

from cluster.db.errors import PrimaryUnavailable
from cluster.resilience.cache import cached
from cluster.workers.ratelimit import rate_limit

COMPUTED = {"n": 0}


@cached("test-items", ttl=60, key="{n}")
async def item(n: int) -> dict[str, int]:
    COMPUTED["n"] += 1
    return {"n": n, "pid": os.getpid()}


@rate_limit("5/10second")
async def limited(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "pid": os.getpid()})


async def cached_item(request: web.Request) -> web.Response:
    value = await item(int(request.match_info["n"]))
    return web.json_response({**value, "computed_here": COMPUTED["n"]})


async def plain(request: web.Request) -> web.Response:
    return web.json_response({"n": int(request.match_info["n"]), "pid": os.getpid()})


async def write(request: web.Request) -> web.Response:
    raise PrimaryUnavailable("database writes refused: no reachable host claims to be primary")


def make() -> web.Application:
    app = web.Application()
    app.router.add_get("/limited", limited)
    app.router.add_get("/cached/{n}", cached_item)
    app.router.add_get("/plain/{n}", plain)
    app.router.add_get("/ruled/{n}", plain)
    app.router.add_post("/write", write)
    return app
