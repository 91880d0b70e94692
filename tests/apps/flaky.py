"""A test app whose `/flaky/{name}` fails exactly one request in ten (per worker) with a 500."""

from __future__ import annotations

from aiohttp import web

FAIL_EVERY = 10


def app() -> web.Application:
    application = web.Application()
    served = 0

    async def flaky(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        if served % FAIL_EVERY == 0:
            return web.json_response({"error": "injected failure", "status": 500}, status=500)
        return web.json_response({"ok": True, "name": request.match_info["name"]})

    application.router.add_get("/flaky/{name}", flaky)
    return application
