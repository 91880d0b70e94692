"""The read-replica router: one connection pool per host, writes to the primary, reads spread
over healthy, caught-up replicas, with failover of reads and read-your-writes.

The caller says what it wants; no SQL is parsed to guess:

    async with db.read() as conn:          # a replica (or the fallback), chosen per checkout
        rows = await conn.fetchall("SELECT ...")
    async with db.write() as conn:         # the primary, autocommit statements
        await conn.execute("INSERT ...")
    async with db.transaction() as conn:   # the primary, one transaction for the whole block
        ...
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from cluster.config import Settings
from cluster.config.settings import DatabaseSettings
from cluster.observability.context import read_your_writes_var
from cluster.db import metrics
from cluster.db.checkouts import PrimaryConnection, ReadConnection
from cluster.db.probe import ProbeResult
from cluster.db.errors import RouterClosed
from cluster.db.health_view import ViewReader, stale_after
from cluster.db.freshness import format_lsn, parse_lsn, wal_end
from cluster.db.host_state import HostState
from cluster.db.hosts import HostSpec, hosts_from_settings
from cluster.db.selection import Routing, plan_routing
from cluster.db.strategies import make_strategy
from cluster.db.transitions import LagLimits, next_delay, primary_position, transition

log = logging.getLogger("db")
health_log = logging.getLogger("db.health")
PRIMARY_SAMPLES = 256
VIEW_POLL = 1.0  # seconds between looks at the supervisor's view (re-read only when replaced)


class Router:
    """Routes checkouts to hosts; see the module docstring. Start it in the event loop that uses it."""

    def __init__(self, settings: DatabaseSettings, specs: Sequence[HostSpec], view: ViewReader | None = None) -> None:
        """``view``: the supervisor's published rounds to follow instead of probing (``db.health_view``)."""
        if not specs or specs[0].role != "primary":
            raise ValueError("the router needs the primary first in its hosts")
        self.settings = settings
        self.hosts = [HostState(spec, settings) for spec in specs]
        self.by_name = {host.name: host for host in self.hosts}
        self.replicas_configured = len(specs) > 1
        self.strategy = make_strategy(settings.strategy, {s.name: s.weight for s in specs},
                                      lambda name: self.by_name[name].load())
        self.routing: Routing = plan_routing([h.view() for h in self.hosts], settings.fallback,
                                             self.replicas_configured)
        self.replayed: dict[str, int | None] = {}
        self.primary_lsn: int | None = None
        self.wal_block_size = 8192  # the primary's, once probed
        # The primary's position at each round, for the time lag of replicas behind it.
        self.primary_samples: deque[tuple[float, int]] = deque(maxlen=PRIMARY_SAMPLES)
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._open = False
        self.view = view
        self._applied: tuple[str, int] | None = None  # the last shared round applied
        self._own_probes: str | None = None  # why this router probes itself although it has a view

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the pools, check every host once, and start the health loop in the background."""
        for host in self.hosts:
            await host.pool.open(wait=False)
        self._open = True
        await self.next_round(first=True)
        self._task = asyncio.create_task(self._health_loop(), name="db-health")
        log.info("database router started", extra={"hosts": [h.name for h in self.hosts],
                                                   "strategy": self.settings.strategy})

    async def close(self) -> None:
        self._open = False
        if self._task is not None:
            self.wake.set()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for host in self.hosts:
            await host.prober.close()
            await host.pool.close()

    # -- health rounds -------------------------------------------------------------
    #
    # Every ``health_check_interval`` (with +-10 % jitter so workers do not probe in
    # step), each host is probed on its own connection: reachable, in recovery or not,
    # and its WAL position. The primary's position is the yardstick for every
    # replica's byte lag. While a host is down the next round comes after at most a
    # second, so it rejoins soon after it is back; a request that loses a connection
    # wakes the loop at once (roles are re-probed right away).
    #
    # Under `cluster start` the supervisor does the probing, once per host, and
    # publishes each round (``db.health_view``): a router with a view applies each
    # new round instead of probing, and probes itself only while the view is
    # missing, stale or unusable. A failed request still takes its host out here at
    # once; it comes back after two published rounds that find it up.

    async def next_round(self, first: bool = False) -> None:
        """One round: the supervisor's latest, when there is a usable one, else our own probes."""
        if self.view is None:
            await self.check_round(first)
            return
        shared, reason = self.view.current(time.time())
        if shared is None:
            if self._own_probes is None:
                health_log.warning("probing the database hosts from this process: %s", reason)
            self._own_probes = reason
            await self.check_round(first)
            return
        if self._own_probes is not None:
            health_log.info("following the supervisor's database health view again")
            self._own_probes = None
            for host in self.hosts:
                await host.prober.close()
        if shared.key != self._applied:
            self._applied = shared.key
            await self.apply_round([(h, shared.results[h.name]) for h in self.hosts], shared.at, first)

    async def check_round(self, first: bool = False) -> None:
        """Probe every host at once, then update their states and the routing snapshot."""
        results = await asyncio.gather(*(h.prober.probe() for h in self.hosts))
        await self.apply_round(list(zip(self.hosts, results)), time.time(), first)

    async def apply_round(self, results: list[tuple[HostState, ProbeResult]], now: float,
                          first: bool = False) -> None:
        """Update every host from one round of probe results taken at ``now``, then the routing snapshot."""
        position = primary_position([r for _, r in results])
        if position is not None:
            self.primary_lsn, self.wal_block_size = position
            self.primary_samples.append((now, self.primary_lsn))
        limits = LagLimits(self.settings.max_lag_seconds, self.settings.max_lag_bytes)
        for host, result in results:
            # Without a primary this round, replicas are measured against the last position seen.
            step = transition(host.name, host.record(), result, self.primary_lsn, self.primary_samples, now,
                              limits, first)
            if step.check_pool:
                await host.pool.check()
            host.adopt(step.record)
            for warning in step.warnings:
                health_log.warning("%s", warning, extra={"db_host": host.name})
        for host in self.hosts:
            metrics.IN_USE.labels(host.name).set(host.load())
        self.rebuild_routing()

    async def _health_loop(self) -> None:
        interval = self.settings.health_check_interval
        # The open flag, not cancellation alone, ends the loop: on 3.11 a cancel that lands as the
        # wake event fires can be swallowed by the wait.
        while self._open:
            any_down = any(not h.health.up for h in self.hosts)
            delay = next_delay(interval, any_down, random.random())
            if self.view is not None and self._own_probes is None:
                delay = min(delay, VIEW_POLL)  # a stat a second: each published round applied within a second
            try:
                async with asyncio.timeout(delay):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                await self.next_round()
            except Exception:  # the loop must outlive any single bad round
                log.exception("database health round failed")

    # -- checkouts ---------------------------------------------------------------

    def read(self) -> ReadConnection:
        """A connection for reads, from a host chosen now; reads fail over before any result."""
        return ReadConnection(self)

    def write(self) -> PrimaryConnection:
        """A primary connection in autocommit mode; never retried elsewhere."""
        return PrimaryConnection(self, transaction=False)

    def transaction(self) -> PrimaryConnection:
        """A primary connection inside one transaction, committed when the block ends without error."""
        return PrimaryConnection(self, transaction=True)

    # -- state changes -----------------------------------------------------------

    def rebuild_routing(self) -> None:
        routing = plan_routing([h.view() for h in self.hosts], self.settings.fallback, self.replicas_configured)
        if routing.write_refusal and routing.write_refusal != self.routing.write_refusal:
            log.error("database writes refused: %s", routing.write_refusal)
        if routing.replicas_unusable and not self.routing.replicas_unusable:
            log.warning("every read replica is stale or down: reads fall back to %s", self.settings.fallback)
        self.routing = routing
        self.replayed = {h.name: h.lsn for h in self.hosts if h.role == "replica"}
        for host in self.hosts:
            metrics.HEALTHY.labels(host.name).set(1 if host.state == "up" else 0)

    def host_failed(self, host: HostState, exc: BaseException) -> None:
        """A request could not reach the host: out of rotation at once, and every role re-probed now."""
        if host.health.request_failed():
            log.warning("database host %s taken out after a request failed: %s: %s",
                        host.name, type(exc).__name__, str(exc).strip())
            self.rebuild_routing()
        self.wake.set()

    def note_replayed(self, host: HostState, position: int) -> None:
        """A replay position seen by a request: newer than the health loop's, never older."""
        if host.lsn is None or position > host.lsn:
            host.lsn = position
            self.replayed[host.name] = position

    @property
    def is_open(self) -> bool:
        return self._open

    def require_open(self) -> None:
        if not self._open:
            raise RouterClosed("the database router is not started (or already closed)")

    async def remember_write(self, conn: AsyncConnection) -> None:
        """Store the primary's WAL position after a commit in the read-your-writes context."""
        cur = await conn.execute("SELECT pg_current_wal_insert_lsn()::text")
        row = await cur.fetchone()
        if row is not None:
            end = wal_end(parse_lsn(row[0]), self.wal_block_size)
            read_your_writes_var.set({"lsn": format_lsn(end), "at": time.time()})

    # -- surfaces ----------------------------------------------------------------

    def status(self, pools: bool = True) -> dict[str, Any]:
        """What the router knows now (a read: the pool gauges are set by the health rounds)."""
        routing = self.routing
        return {
            "enabled": True,
            "health_source": "own probes" if self.view is None or self._own_probes else "supervisor",
            "strategy": self.settings.strategy,
            "fallback": self.settings.fallback,
            "writer": routing.writer,
            "writes_refused": routing.write_refusal,
            "fresh_replicas": list(routing.fresh_replicas),
            "replicas_unusable": routing.replicas_unusable,
            "limits": {"max_lag_seconds": self.settings.max_lag_seconds, "max_lag_bytes": self.settings.max_lag_bytes,
                       "sticky_window": self.settings.sticky_window},
            "hosts": [host.status(pools) for host in self.hosts],
        }


def router_from_settings(settings: Settings) -> Router | None:
    """The router for ``database.*``, or None when no ``database.url`` is set (the router is off).

    With ``database.health_view`` (set by `cluster start` for its children) it follows the supervisor's rounds.
    """
    specs = hosts_from_settings(settings)
    if not specs:
        return None
    db = settings.database
    view = None
    if db.health_view:
        view = ViewReader(Path(db.health_view), [s.name for s in specs],
                          stale_after(db.health_check_interval, db.connect_timeout))
    return Router(db, specs, view)


async def probe_status(settings: Settings) -> dict[str, Any] | None:
    """One round of health checks from outside a worker: roles, states and lag, no pool figures.

    For ``cluster replicas status --probe``, when no cluster runs (pools are never opened).
    """
    router = router_from_settings(settings)
    if router is None:
        return None
    try:
        await router.check_round(first=True)
        status = router.status(pools=False)
    finally:
        for host in router.hosts:
            await host.prober.close()
    return status
