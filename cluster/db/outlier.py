"""Outlier ejection of a database host: one circuit breaker per host and worker (Envoy-style).

Reads that time out or lose their connection count as failures, answered reads as
successes (a full pool counts as neither: a busy host is not a broken one). Three failures
in a row, or half of the last ten seconds' reads failing, eject the host from reads for
5 s, 10 s, 15 s... as the ejections repeat (capped at 60 s); one trial read then decides.
Every worker ejects on what it sees itself, within about one ``database.read_timeout``,
without waiting for the health loop's two failed checks.
"""

from __future__ import annotations

from cluster.resilience.breaker import CircuitBreaker, register
from cluster.resilience.breaker_policy import BreakerPolicy

HOST_POLICY = BreakerPolicy(failure_rate=0.5, slow_rate=1.0, slow_call_seconds=3600.0, window=10.0, minimum_calls=10,
                            open_wait=5.0, max_open_wait=60.0, half_open_calls=1, consecutive_failures=3)


def host_breaker(host: str) -> CircuitBreaker:
    """A new breaker for a host of a new router (listed in /api/enterprise/breakers as ``db:<host>``)."""
    return register(CircuitBreaker(f"db:{host}", HOST_POLICY))
