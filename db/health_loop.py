"""The background task that checks every host, off the request path.

Every ``health_check_interval`` (with +-10 % jitter so workers do not probe in step), each host
is probed on its own connection: reachable, in recovery or not, and its WAL position. The
primary's position is the yardstick for every replica's byte lag. While a host is down the
next round comes after at most a second, so it rejoins soon after it is back; a request that
loses a connection wakes the loop at once (roles are re-probed right away).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from db import metrics
from db.freshness import is_fresh, lag_bytes, lag_seconds, time_behind
from db.probe import ProbeResult

if TYPE_CHECKING:
    from db.host_state import HostState
    from db.router import Router

log = logging.getLogger("db.health")
DOWN_RETRY = 1.0


def _primary_lsn(results: list[tuple[HostState, ProbeResult]]) -> int | None:
    positions = [r.lsn for _, r in results if r.ok and r.in_recovery is False and r.lsn is not None]
    return max(positions) if positions else None


async def _apply(router: Router, host: HostState, result: ProbeResult, primary_lsn: int | None, now: float,
                 first: bool) -> None:
    settings = router.settings
    host.checked_at = now
    if not result.ok:
        host.last_error = result.error
        if first:
            host.health.first_check(False)
        elif host.health.check_failed():
            log.warning("database host %s down after failed checks: %s", host.name, result.error)
        return
    if not host.health.up:
        # Drop the connections that died with the host before it serves again.
        await host.pool.check()
    role = "replica" if result.in_recovery else "primary"
    if role != host.role:
        log.warning("database host %s now reports itself %s (was %s)", host.name, role, host.role)
    host.role = role
    host.lsn = result.lsn
    if role == "replica":
        host.lag_bytes = lag_bytes(primary_lsn, result.lsn)
        behind_for = None if result.lsn is None else time_behind(router.primary_samples, result.lsn, now)
        host.lag_seconds = lag_seconds(host.lag_bytes, behind_for, result.replay_age)
        fresh = is_fresh(host.lag_seconds, host.lag_bytes, settings.max_lag_seconds, settings.max_lag_bytes)
        if fresh != host.fresh and not first:
            log.warning("replica %s is %s (lag %s bytes, %s s)", host.name, "fresh again" if fresh else "stale",
                        host.lag_bytes, host.lag_seconds)
        host.fresh = fresh
        if host.lag_bytes is not None:
            metrics.LAG_BYTES.labels(host.name).set(host.lag_bytes)
        if host.lag_seconds is not None:
            metrics.LAG_SECONDS.labels(host.name).set(host.lag_seconds)
    else:
        host.lag_bytes = host.lag_seconds = None
        host.fresh = False
    if first:
        host.health.first_check(True)
    elif host.health.check_passed():
        log.warning("database host %s is back up", host.name)


async def check_round(router: Router, first: bool = False) -> None:
    """Probe every host at once, then update their states and the routing snapshot."""
    hosts = router.hosts
    results = list(zip(hosts, await asyncio.gather(*(h.prober.probe() for h in hosts))))
    await apply_round(router, results, time.time(), first)


async def apply_round(router: Router, results: list[tuple[HostState, ProbeResult]], now: float,
                      first: bool = False) -> None:
    """Update every host from one round of probe results taken at ``now``, then the routing snapshot."""
    primary_lsn = _primary_lsn(results)
    if primary_lsn is not None:
        router.primary_lsn = primary_lsn
        router.wal_block_size = next(r.block_size for _, r in results if r.ok and r.in_recovery is False)
        router.primary_samples.append((now, primary_lsn))
    for host, result in results:
        # Without a primary this round, replicas are measured against the last position seen.
        await _apply(router, host, result, router.primary_lsn, now, first)
    for host in router.hosts:
        metrics.IN_USE.labels(host.name).set(host.load())
    router.rebuild_routing()


def next_delay(interval: float, any_down: bool, rand: float) -> float:
    """Seconds to the next round: the interval +-10 % (``rand`` in [0, 1)), at most DOWN_RETRY while a host is down."""
    delay = interval * (0.9 + 0.2 * rand)
    return min(delay, DOWN_RETRY) if any_down else delay


async def run_health_loop(router: Router) -> None:
    interval = router.settings.health_check_interval
    # The open flag, not cancellation alone, ends the loop: on 3.11 a cancel that lands as the
    # wake event fires can be swallowed by the wait.
    while router.is_open:
        any_down = any(not h.health.up for h in router.hosts)
        try:
            async with asyncio.timeout(next_delay(interval, any_down, random.random())):
                await router.wake.wait()
        except TimeoutError:
            pass
        router.wake.clear()
        try:
            await check_round(router)
        except Exception:  # the loop must outlive any single bad round
            log.exception("database health round failed")
