"""A test app that burns CPU on demand: load for the autoscaler's tests and bench.

``GET /burn?ms=N`` spins N ms of the worker's CPU time, yielding to the
event loop every 10 ms so a long burn on a crowded machine does not starve
gunicorn's heartbeat; ``GET /sleep?ms=N`` holds a request N ms without CPU,
to have requests in flight while workers retire.
"""

from __future__ import annotations

import asyncio
import os
import time

from aiohttp import web

MAX_MS = 60_000
SLICE = 0.01


def _ms(request: web.Request) -> float:
    try:
        value = int(request.query.get("ms", "10"))
    except ValueError:
        raise web.HTTPBadRequest(reason="ms must be an integer") from None
    if not 0 <= value <= MAX_MS:
        raise web.HTTPBadRequest(reason=f"ms must be within 0..{MAX_MS}")
    return value / 1000.0


async def burn(request: web.Request) -> web.Response:
    remaining = _ms(request)
    spins = 0
    while remaining > 0:
        started = time.thread_time()
        deadline = started + min(remaining, SLICE)
        while time.thread_time() < deadline:
            spins += 1
        remaining -= time.thread_time() - started
        await asyncio.sleep(0)
    return web.json_response({"pid": os.getpid(), "spins": spins})


async def sleep(request: web.Request) -> web.Response:
    await asyncio.sleep(_ms(request))
    return web.json_response({"pid": os.getpid()})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/burn", burn)
    app.router.add_get("/sleep", sleep)
    return app
