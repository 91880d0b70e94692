"""The HTTP metrics middleware: requests, durations and in-flight count per route template.

Every write to a multiprocess metric takes a lock and touches its mmap'd
file; three of them per request (counter, histogram bucket and sum) cost a
no-op endpoint about a third of its throughput. So the middleware only
tallies in plain dicts, and ``publish`` folds the tally into the Prometheus
metrics once a second (and at shutdown): a scrape sees figures at most a
second old, and a worker killed with SIGKILL loses at most its last second.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from cluster.observability.metrics import DURATION_BUCKETS, UNMATCHED_ROUTE, HttpMetrics, http_metrics
from cluster.workers.state import WORKER_STATE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Any other method is folded into one label so a client cannot grow the series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PUBLISH_EVERY = 1.0


def route_label(request: web.Request) -> str:
    """The matched route's template (``/items/{id}``), or a fixed label when nothing matched."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED_ROUTE
    return resource.canonical


class RequestTally:
    """Requests counted since the last flush: per (method, route, status), and duration buckets per (method, route).

    Bucket ``i`` counts durations ``<= DURATION_BUCKETS[i]`` (the last one,
    +Inf, everything longer), as prometheus_client's ``Histogram.observe``
    would file them.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        pair = (method, route)
        buckets = self.buckets.get(pair)
        if buckets is None:
            buckets = self.buckets[pair] = [0] * (len(DURATION_BUCKETS) + 1)
            self.sums[pair] = 0.0
        buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.sums[pair] += seconds

    def flush(self, metrics: HttpMetrics) -> None:
        """Add everything tallied to the Prometheus metrics and start afresh."""
        counts, buckets, sums = self.counts, self.buckets, self.sums
        self.counts, self.buckets, self.sums = {}, {}, {}
        for (method, route, status), count in counts.items():
            metrics.requests.labels(method, route, str(status)).inc(count)
        for (method, route), per_bucket in buckets.items():
            # prometheus_client has no public way to add many observations at
            # once; its histogram keeps one value per bucket and one for the
            # sum (tests/unit/test_http_metrics.py checks we match observe()).
            child: Any = metrics.duration.labels(method, route)
            child._sum.inc(sums[(method, route)])
            for index, count in enumerate(per_bucket):
                if count:
                    child._buckets[index].inc(count)


def metrics_middleware(tally: RequestTally) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """A middleware that counts and times requests into ``tally``."""
    record = tally.record

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
            record(method, route, status, time.perf_counter() - started)

    return middleware


def publisher(tally: RequestTally) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context that publishes the tally and the in-flight count every second.

    The request middleware already counts requests in flight; sampling that
    count spares every request two more locked writes.
    """

    async def publish(app: web.Application) -> AsyncIterator[None]:
        metrics = http_metrics()

        def once() -> None:
            tally.flush(metrics)
            metrics.in_flight.set(WORKER_STATE.in_flight)

        async def loop() -> None:
            while True:
                await asyncio.sleep(PUBLISH_EVERY)
                once()

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        once()

    return publish
