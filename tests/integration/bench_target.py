"""A real aiohttp server for the `cluster bench` tests: ``python -m tests.integration.bench_target PORT [CERT KEY]``.

/ok answers 200 (/served counts them), /fail 500, /chunked 200 with a chunked body, /slow after
5 s, anything else 404. /stall answers 200, except
that the first request arriving ``STALL_AFTER`` seconds after the first one
blocks the whole server for ``STALL_FOR`` seconds (a stop-the-world pause).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import time

from aiohttp import web

STALL_AFTER = float(os.environ.get("STALL_AFTER", "1.0"))
STALL_FOR = float(os.environ.get("STALL_FOR", "1.0"))
_state = {"first": 0.0, "stalled": False, "ok": 0}


async def ok(request: web.Request) -> web.Response:
    _state["ok"] += 1
    return web.Response(text="ok")


async def served(request: web.Request) -> web.Response:
    """How many /ok requests were answered: what a test waits on instead of sleeping."""
    return web.json_response({"ok": _state["ok"]})


async def fail(request: web.Request) -> web.Response:
    return web.Response(status=500, text="boom")


async def chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(3):
        await response.write(b"x" * 1000)
    await response.write_eof()
    return response


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="late")


async def stall(request: web.Request) -> web.Response:
    now = time.monotonic()
    if not _state["first"]:
        _state["first"] = now
    elif not _state["stalled"] and now - _state["first"] >= STALL_AFTER:
        _state["stalled"] = True
        time.sleep(STALL_FOR)  # blocks the event loop: every connection waits, as in a GC pause
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/served", served)
    app.router.add_get("/fail", fail)
    app.router.add_get("/stall", stall)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/slow", slow)
    tls = None
    if len(sys.argv) > 3:  # CERT KEY: serve HTTPS
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[2], sys.argv[3])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), ssl_context=tls, print=None, access_log=None)


if __name__ == "__main__":
    main()
