"""aiohttp access log as JSON lines carrying the request id.

aiohttp writes the access log after the handler's context is gone (aiohttp
issue 3787), so the id is read from the response header the middleware set,
not from the context variable.
"""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from cluster.workers.middleware import REQUEST_ID_HEADER


class JsonAccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status,
            extra={
                "request_id": response.headers.get(REQUEST_ID_HEADER),
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "remote": request.remote,
                "bytes": response.body_length,
            },
        )
