"""Context that travels with a request into the jobs it enqueues.

- ``request_id_var``: the correlation id (X-Request-ID) of the request or job.
- ``read_your_writes_var``: the read-your-writes token of the replica router
  (the primary's WAL LSN after a write, and when it was taken), so reads in
  the same request, or in a job it enqueued, avoid replicas that lag behind it.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
read_your_writes_var: ContextVar[dict[str, object] | None] = ContextVar("read_your_writes", default=None)
