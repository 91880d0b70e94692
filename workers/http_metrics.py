"""The HTTP metrics middleware: requests, durations and in-flight count per route template."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from observability.metrics import UNMATCHED_ROUTE, http_metrics
from workers.state import WORKER_STATE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Any other method is folded into one label so a client cannot grow the series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(request: web.Request) -> str:
    """The matched route's template (``/items/{id}``), or a fixed label when nothing matched."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED_ROUTE
    return resource.canonical


def metrics_middleware() -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """A middleware that counts and times requests (in flight: see ``publish_in_flight``).

    prometheus_client's ``labels()`` takes a lock and builds a tuple on every
    call; the labelled children are cached here per (method, route[, status]),
    which keeps the per-request cost to the mmap writes themselves.
    """
    metrics = http_metrics()
    counters: dict[tuple[str, str, int], Any] = {}
    histograms: dict[tuple[str, str], Any] = {}

    def observe(method: str, route: str, status: int, seconds: float) -> None:
        counter = counters.get((method, route, status))
        if counter is None:
            counter = counters[(method, route, status)] = metrics.requests.labels(method, route, str(status))
        histogram = histograms.get((method, route))
        if histogram is None:
            histogram = histograms[(method, route)] = metrics.duration.labels(method, route)
        counter.inc()
        histogram.observe(seconds)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        route = route_label(request)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            observe(method, route, status, time.perf_counter() - started)

    return middleware


IN_FLIGHT_EVERY = 1.0


async def publish_in_flight(app: web.Application) -> AsyncIterator[None]:
    """Copy this worker's in-flight count into its gauge every second (an aiohttp cleanup context).

    The request middleware already counts requests in flight; sampling that
    count spares every request two locked writes to the metrics file.
    """
    gauge = http_metrics().in_flight

    async def publish() -> None:
        while True:
            gauge.set(WORKER_STATE.in_flight)
            await asyncio.sleep(IN_FLIGHT_EVERY)

    task = asyncio.create_task(publish())
    yield
    task.cancel()
