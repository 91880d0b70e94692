"""The one middleware every request passes: correlation id, in-flight count, JSON errors."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from observability.context import request_id_var
from observability.logs import new_request_id
from workers.state import WORKER_STATE

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("workers.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, **extra: object) -> web.Response:
    """A JSON error body: {"error": ..., "status": ...}."""
    return web.json_response({"error": message, "status": status, **extra}, status=status)


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER)
    request_id = incoming if incoming and _VALID_ID.match(incoming) else new_request_id()
    request_id_var.set(request_id)
    state = WORKER_STATE
    state.in_flight += 1
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
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = json_error(500, "Internal Server Error", request_id=request_id)
    finally:
        state.in_flight -= 1
        state.requests += 1
    response.headers[REQUEST_ID_HEADER] = request_id
    return response
