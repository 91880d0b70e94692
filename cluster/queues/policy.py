"""Pure policy of the queues: retry backoff, leases, reaper cadence, crash verdicts. No I/O, no clock."""

from __future__ import annotations

import random
from collections.abc import Iterable

LEASE_MARGIN = 1.0
JITTER = 0.5
CRASH_LIMIT = 3


def backoff_delay(attempt: int, base: float, cap: float, rand: float | None = None) -> float:
    """Seconds to wait before running a job again after its ``attempt``-th run failed.

    delay = min(cap, base * 2 ** (attempt - 1)) * (1 + JITTER * r),  r uniform in [0, 1)

    Exponential like Sidekiq's (attempt^4 + 15 + rand(10 * (attempt + 1))) but
    with a configurable base so short queues retry in seconds, not minutes.
    The jitter spreads a burst of failures (a dependency that blipped) over
    half a step so the retries do not all land at once, and since the lower
    bound of step n+1 (2d) is above the upper bound of step n (1.5d), delays
    never shrink from one attempt to the next until the cap.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    r = random.random() if rand is None else rand
    step = min(cap, base * 2.0 ** min(attempt - 1, 60))
    return step * (1.0 + JITTER * r)


def should_retry(attempt: int, max_retries: int) -> bool:
    """Run ``attempt`` (1-based) failed: is there a retry left? A job runs at most 1 + max_retries times."""
    return attempt <= max_retries


def lease_seconds(queue_timeout: float, job_timeouts: Iterable[float | None], kill_grace: float) -> float:
    """How long a delivered job may stay unacknowledged before the reaper takes it back.

    Longer than the longest timeout of the queue's own jobs (``job_timeouts``:
    the jobs registered on this priority) plus the kill grace: by then its
    first run is either finished or its process has been killed, so a
    reclaimed job never runs twice at the same time. A job sent to this queue
    with a longer timeout of its own has its lease renewed by its consumer.
    The lease only matters for deaths nobody saw: a consumer that dies on
    this host has its jobs claimed by name at once.
    """
    longest = max([queue_timeout, *(t for t in job_timeouts if t is not None)])
    return longest + kill_grace + LEASE_MARGIN


def reap_interval(lease: float) -> float:
    """How often a consumer tries to become the reaper: a quarter lease, between 0.5 s and 5 s."""
    return max(0.5, min(5.0, lease / 4))


def crashed_out(crashes: int, limit: int = CRASH_LIMIT) -> bool:
    """A job was running when its consumer died for the ``crashes``-th time: does it go to the dead letter?

    A crash is not an attempt (the handler did not fail, its process died),
    so it never uses up a retry; but a job that keeps taking its consumer
    down with it must stop being rerun.
    """
    return crashes >= limit
