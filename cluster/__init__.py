"""cluster: a supervised gunicorn + aiohttp runtime with priority job queues and a read-replica router.

The public API is what this module exports (``__all__``), for example::

    from cluster import job, enqueue, current_job, DB_KEY, CACHE_KEY, cached, rate_limit, breaker

Everything under ``cluster.*`` that is not exported here is internal and may
change in any release. The names load on first use: ``import cluster`` (done
by every process of the tree, for ``cluster.config`` and the rest) imports no
aiohttp, Redis or PostgreSQL code by itself.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cluster")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

# name -> the submodule that defines it
_EXPORTS = {
    # jobs
    "job": "queues.registry", "enqueue": "queues.api", "enqueue_sync": "queues.api",
    "enqueue_many": "queues.api", "enqueue_many_sync": "queues.api", "enqueue_unique": "queues.api", "current_job": "queues.context",
    "JobRequest": "queues.enqueue_plan", "JobContext": "queues.context", "Enqueued": "queues.enqueue_plan",
    "QueueFull": "queues.enqueue_plan", "EnqueueUnknown": "queues.enqueue_plan", "QueueUnavailable": "queues.connection",
    "JobTimeout": "queues.execute", "UnknownJob": "queues.registry",
    # the read-replica router
    "DB_KEY": "workers.db_routes", "Router": "db.router", "NoHostAvailable": "db.errors",
    "PrimaryUnavailable": "db.errors",
    # cache, rate limits, circuit breakers
    "CACHE_KEY": "workers.resilience_api", "cached": "resilience.cache", "rate_limit": "workers.ratelimit",
    "RateLimiter": "resilience.ratelimit", "breaker": "resilience.breaker", "BreakerPolicy": "resilience.breaker_policy",
    "CircuitOpen": "resilience.breaker",
    # settings
    "Settings": "config.settings",
}
__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
