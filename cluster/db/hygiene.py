"""Connection hygiene: a ping only for connections that sat idle, and slow statements logged.

The pool's ``check`` callback runs on every checkout; a ping there would add a round trip
to every read of a busy pool. ``IdleCheck`` pings only a connection last handed out more
than ``database.ping_after_idle`` ago (idle that long, or held that long: rare, and a ping is
cheap); a firewall or a restarted server may have dropped it meanwhile. (Not the
pool's ``reset`` callback to stamp returns: with one, psycopg_pool returns every connection
through a background task, and a just-returned connection looks busy to the router.)
Recycling after ``max_lifetime`` (with psycopg_pool's own jitter of up to -5 %) and
``max_idle`` are the pool's own options.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from cluster.db import metrics
from cluster.observability.context import request_id_var

log = logging.getLogger("db.slow")
STATEMENT_CHARS = 200


class IdleCheck:
    """The pool's ``check`` callback: ping a connection only when it was last handed out long ago."""

    def __init__(self, ping_after_idle: float) -> None:
        self.ping_after_idle = ping_after_idle
        self._handed_out: weakref.WeakKeyDictionary[AsyncConnection, float] = weakref.WeakKeyDictionary()

    async def check(self, conn: AsyncConnection) -> None:
        now = time.monotonic()
        last = self._handed_out.get(conn)
        self._handed_out[conn] = now
        if last is not None and now - last >= self.ping_after_idle:
            await AsyncConnectionPool.check_connection(conn)


def statement_text(query: Any) -> str:
    """The statement's first characters for a log line; never its parameters."""
    if isinstance(query, bytes):
        query = query.decode(errors="replace")
    text = query if isinstance(query, str) else f"<{type(query).__name__}>"
    return " ".join(text.split())[:STATEMENT_CHARS]


def note_duration(host: str, role: str, query: Any, seconds: float, slow_ms: float) -> None:
    """Log and count a routed statement slower than ``database.slow_query_ms``."""
    if slow_ms <= 0 or seconds * 1000 < slow_ms:
        return
    metrics.SLOW_QUERIES.labels(host).inc()
    log.warning("slow query: %.0f ms on %s (%s)", seconds * 1000, host, role,
                extra={"duration_ms": round(seconds * 1000, 1), "host": host, "role": role,
                       "request_id": request_id_var.get(), "statement": statement_text(query)})
