"""The one middleware every request passes: correlation id, in-flight count, JSON errors, body deadline.

A client's mistake is never a server error: a client that disconnects in the
middle of its request is logged at INFO and answered (for the books: the
access log and the HTTP metrics) with 499, nginx's "client closed request";
a body that stops arriving for ``server.body_timeout`` seconds gets 408; a
``Content-Length`` over ``server.max_body_size`` gets 413 at once, before a
byte of the body is read (aiohttp would read up to the limit first, and a
client that announces 10 GB and sends nothing would wait for the 408).

While the worker drains (a reload, a stop, a scale-down), every response
carries ``Connection: close``: the client learns the connection ends before it
sends another request on it, instead of having that request reset
(``workers.gunicorn_worker.DrainingWorker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from cluster.observability.context import request_id_var
from cluster.observability.logs import new_request_id
from cluster.workers.state import WORKER_STATE

REQUEST_ID_HEADER = "X-Request-ID"
CLIENT_CLOSED = 499
BODY_TIMEOUT = web.AppKey("cluster_body_timeout", float)
BODY_LIMIT = web.AppKey("cluster_body_limit", int)
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("workers.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, **extra: object) -> web.Response:
    """A JSON error body: {"error": ..., "status": ...}."""
    return web.json_response({"error": message, "status": status, **extra}, status=status)


def too_large(request: web.Request) -> web.Response | None:
    """413 for a request whose announced body is over the limit; the connection closes unread."""
    limit = request.config_dict.get(BODY_LIMIT)
    length = request.content_length
    if not limit or length is None or length <= limit:
        return None
    response = json_error(413, f"the request body ({length} bytes) is over the limit of {limit} bytes", limit=limit)
    response.force_close()  # its body is never read, so the connection cannot carry another request
    return response


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def watch_body(request: web.Request, timeout: float) -> None:
    """Fail the body's reader with 408 once ``timeout`` seconds pass with no byte of it arriving."""
    payload = request.content
    seen = -1
    while not payload.is_eof():
        if payload.total_bytes == seen:
            payload.set_exception(web.HTTPRequestTimeout(reason=f"no request body bytes for {timeout:g}s"))
            return
        seen = payload.total_bytes
        await asyncio.sleep(timeout)


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER)
    request_id = incoming if incoming and _VALID_ID.match(incoming) else new_request_id()
    request_id_var.set(request_id)
    refused = too_large(request)
    if refused is not None:
        refused.headers[REQUEST_ID_HEADER] = request_id
        return refused
    state = WORKER_STATE
    state.in_flight += 1
    timeout = request.config_dict.get(BODY_TIMEOUT)
    watchdog = (asyncio.create_task(watch_body(request, timeout))
                if timeout and request.body_exists and not request.content.is_eof() else None)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        extra = {"allowed": sorted(exc.allowed_methods)} if isinstance(exc, web.HTTPMethodNotAllowed) else {}
        response = json_error(exc.status, exc.reason, **extra)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        if exc.status == web.HTTPRequestTimeout.status_code:
            response.force_close()
    except ConnectionResetError:
        if not client_gone(request):
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = json_error(500, "Internal Server Error", request_id=request_id)
        else:
            log.info("client closed the connection during %s %s", request.method, request.path,
                     extra={"status": CLIENT_CLOSED})
            response = json_error(CLIENT_CLOSED, "Client Closed Request")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = json_error(500, "Internal Server Error", request_id=request_id)
    finally:
        state.in_flight -= 1
        state.requests += 1
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
    response.headers[REQUEST_ID_HEADER] = request_id
    if state.draining:
        response.force_close()
    return response
