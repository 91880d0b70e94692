"""A bare aiohttp app for plain gunicorn: `gunicorn -k aiohttp.GunicornWebWorker _plain_ping:app`.

Only `/ping` (the body ours sends), none of our middleware or runner: how
aiohttp's gunicorn worker behaves on its own.
"""

from __future__ import annotations

from aiohttp import web


async def ping(request: web.Request) -> web.Response:
    return web.Response(body=b'{"ok": true}', content_type="application/json")


app = web.Application()
app.router.add_get("/ping", ping)
