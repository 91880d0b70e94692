"""A user app for tests: `GET /slow?seconds=S[&mark=FILE]` answers after S seconds (touching FILE when it
starts); `GET /hello` at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web


async def slow(request: web.Request) -> web.Response:
    seconds = float(request.query.get("seconds", "1"))
    if "mark" in request.query:  # tests wait for this file instead of sleeping
        Path(request.query["mark"]).touch()
    await asyncio.sleep(seconds)
    return web.json_response({"slept": seconds})


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/hello", hello)
    return app
