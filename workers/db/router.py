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
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool, TooManyRequests

from config import Settings
from config.settings import DatabaseSettings
from observability.context import read_your_writes_var
from workers.db import metrics
from workers.db.errors import (
    Failure,
    NoHostAvailable,
    PrimaryUnavailable,
    RouterClosed,
    classify,
    is_read_only_answer,
)
from workers.db.freshness import format_lsn, parse_lsn, wal_end
from workers.db.health_loop import check_round, run_health_loop
from workers.db.health_state import HostHealth
from workers.db.hosts import HostSpec, hosts_from_settings
from workers.db.probe import Prober
from workers.db.selection import (
    HostView,
    ObservedRole,
    Routing,
    pick_read_host,
    plan_routing,
    replicas_to_verify,
    token_lsn,
)
from workers.db.strategies import make_strategy

log = logging.getLogger("workers.db")
PRIMARY_SAMPLES = 256


class HostState:
    """One host: its pool, its prober, and what the last checks and requests said about it."""

    def __init__(self, spec: HostSpec, settings: DatabaseSettings) -> None:
        self.spec = spec
        self.name = spec.name
        self.pool: AsyncConnectionPool = AsyncConnectionPool(
            spec.url, min_size=1, max_size=settings.pool_size, open=False, name=spec.name,
            timeout=settings.checkout_timeout, max_waiting=settings.pool_size * 8,
            reconnect_timeout=max(60.0, settings.health_check_interval * 4),
            kwargs={"autocommit": True, "connect_timeout": max(2, round(settings.connect_timeout)),
                    "application_name": "cluster"},
        )
        self.prober = Prober(spec.url, settings.connect_timeout)
        self.health = HostHealth()
        self.role: ObservedRole = spec.role  # as configured until the host says otherwise
        self.lsn: int | None = None
        self.lag_bytes: int | None = None
        self.lag_seconds: float | None = None
        self.fresh = spec.role == "replica"
        self.queries = 0
        self.errors = 0
        self.last_error: str | None = None
        self.checked_at: float | None = None
        self._query_metrics: dict[str, Any] = {}
        self._error_metric = metrics.ERRORS.labels(spec.name)

    def count_query(self) -> None:
        self.queries += 1
        child = self._query_metrics.get(self.role)
        if child is None:
            child = self._query_metrics[self.role] = metrics.QUERIES.labels(self.name, self.role)
        child.inc()

    def count_error(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {str(exc).strip()}"
        self._error_metric.inc()

    def load(self) -> int:
        """Connections in use plus callers waiting, from the pool's own counts."""
        stats = self.pool.get_stats()
        return stats["pool_size"] - stats["pool_available"] + stats.get("requests_waiting", 0)

    @property
    def state(self) -> str:
        if not self.health.up:
            return "down"
        return "stale" if self.role == "replica" and not self.fresh else "up"

    def view(self) -> HostView:
        return HostView(self.name, self.role, self.health.up, self.fresh, self.lag_bytes, self.lag_seconds)

    def status(self, pools: bool = True) -> dict[str, Any]:
        connections = None
        if pools:
            stats = self.pool.get_stats()
            connections = {"in_use": stats["pool_size"] - stats["pool_available"], "idle": stats["pool_available"],
                           "size": stats["pool_size"], "max": stats["pool_max"],
                           "waiting": stats.get("requests_waiting", 0)}
        return {
            "host": self.name,
            "role": self.role,
            "configured_role": self.spec.role,
            "state": self.state,
            "weight": self.spec.weight,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "lag_bytes": self.lag_bytes,
            "lsn": None if self.lsn is None else format_lsn(self.lsn),
            "connections": connections,
            "queries": self.queries,
            "errors": self.errors,
            "last_error": self.last_error,
            "checked_at": self.checked_at,
        }


class Router:
    """Routes checkouts to hosts; see the module docstring. Start it in the event loop that uses it."""

    def __init__(self, settings: DatabaseSettings, specs: Sequence[HostSpec]) -> None:
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

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the pools, check every host once, and start the health loop in the background."""
        for host in self.hosts:
            await host.pool.open(wait=False)
        self._open = True
        await check_round(self, first=True)
        self._task = asyncio.create_task(run_health_loop(self), name="db-health")
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
        routing = self.routing
        if pools:
            for host in self.hosts:
                metrics.IN_USE.labels(host.name).set(host.load())
        return {
            "enabled": True,
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


class ReadConnection:
    """A checked-out read connection that moves to another host if the first statement fails.

    Until a statement has returned a result, a lost connection, a full pool or a recovery
    conflict sends the statement to the next host (another fresh replica, then the fallback).
    After that, errors reach the caller: what it has already read may depend on the host.
    ``connection`` gives the psycopg connection itself, without that protection.
    """

    __slots__ = ("_router", "_must_see", "_tried", "_delivered", "host", "conn")

    def __init__(self, router: Router) -> None:
        self._router = router
        token = read_your_writes_var.get()
        self._must_see = None if token is None else token_lsn(token, time.time(), router.settings.sticky_window)
        self._tried: list[str] = []
        self._delivered = False
        self.host: HostState | None = None
        self.conn: AsyncConnection | None = None

    async def __aenter__(self) -> ReadConnection:
        self._router.require_open()
        if self._must_see is None or not await self._caught_up_replica(self._must_see):
            await self._acquire(None)
        return self

    async def _caught_up_replica(self, must_see: int) -> bool:
        """Read-your-writes with no replica known to be past the write (the health loop's view is
        up to one interval old): ask one fresh replica how far it has replayed, on the connection
        the read would use. One extra round trip, and the answer serves later reads too."""
        router = self._router
        candidates = replicas_to_verify(router.routing, router.replayed, must_see)
        if not candidates:
            return False
        host = router.by_name[router.strategy.choose(candidates)]
        conn: AsyncConnection | None = None
        try:
            conn = await host.pool.getconn()
            cur = await conn.execute("SELECT pg_last_wal_replay_lsn()::text")
            row = await cur.fetchone()
        except (psycopg.OperationalError, TooManyRequests) as exc:
            if conn is not None:
                await host.pool.putconn(conn)
            self._failed(host, exc, Failure.BUSY if isinstance(exc, TooManyRequests) else classify(exc, True))
            return False
        position = parse_lsn(row[0]) if row and row[0] else None
        if position is not None:
            router.note_replayed(host, position)
        if position is None or position < must_see:
            await host.pool.putconn(conn)
            return False
        self.host, self.conn = host, conn
        host.count_query()
        return True

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        host, conn = self.host, self.conn
        if host is None or conn is None:
            return
        self.conn = None
        if exc is not None and classify(exc, False) is Failure.HOST_DOWN:
            # Lost while the caller used the connection directly; idempotent if execute() saw it first.
            self._router.host_failed(host, exc)
        await host.pool.putconn(conn)

    async def _acquire(self, last_error: BaseException | None) -> None:
        router = self._router
        while True:
            name = pick_read_host(router.routing, router.strategy, router.replayed, self._must_see, self._tried)
            if name is None:
                raise NoHostAvailable(
                    f"no database host could serve the read (tried: {', '.join(self._tried) or 'none usable'})"
                ) from last_error
            host = router.by_name[name]
            try:
                self.conn = await host.pool.getconn()
            except (psycopg.OperationalError, TooManyRequests) as exc:
                self._failed(host, exc, Failure.BUSY if isinstance(exc, TooManyRequests) else classify(exc, False))
                last_error = exc
                continue
            self.host = host
            host.count_query()
            return

    def _failed(self, host: HostState, exc: BaseException, failure: Failure | None) -> None:
        host.count_error(exc)
        self._tried.append(host.name)
        log.warning("read on %s failed (%s), trying another host: %s",
                    host.name, failure.value if failure else "error", host.last_error)
        if failure is Failure.HOST_DOWN:
            self._router.host_failed(host, exc)
        elif failure is Failure.BUSY:
            self._router.wake.set()  # a pool that cannot connect may hide a dead host: check now

    @property
    def connection(self) -> AsyncConnection:
        """The psycopg connection; using it directly gives up failover for this checkout."""
        assert self.conn is not None, "use inside `async with router.read()`"
        self._delivered = True
        return self.conn

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> AsyncCursor[Any]:
        """``AsyncConnection.execute``, retried on another host when it fails before any result."""
        while True:
            host, conn = self.host, self.conn
            assert host is not None and conn is not None, "use inside `async with router.read()`"
            try:
                cursor = await conn.execute(query, params, **kwargs)
            except Exception as exc:
                failure = None if self._delivered else classify(exc, host.role == "replica")
                if failure is None:
                    if classify(exc, False) is Failure.HOST_DOWN:
                        host.count_error(exc)
                        self._router.host_failed(host, exc)
                    raise
                self._failed(host, exc, failure)
                self.conn = None
                await host.pool.putconn(conn)
                await self._acquire(exc)
                continue
            self._delivered = True
            return cursor

    async def fetchall(self, query: Any, params: Any = None) -> list[Any]:
        cursor = await self.execute(query, params)
        return await cursor.fetchall()

    async def fetchone(self, query: Any, params: Any = None) -> Any:
        cursor = await self.execute(query, params)
        return await cursor.fetchone()


class PrimaryConnection:
    """A checkout pinned to the primary for its whole life (a write, or a transaction)."""

    __slots__ = ("_router", "_transaction", "_tx", "host", "conn")

    def __init__(self, router: Router, transaction: bool) -> None:
        self._router = router
        self._transaction = transaction
        self._tx: Any = None
        self.host: HostState | None = None
        self.conn: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        router = self._router
        router.require_open()
        routing = router.routing
        if routing.writer is None:
            raise PrimaryUnavailable(f"database writes refused: {routing.write_refusal}")
        host = router.by_name[routing.writer]
        try:
            conn = await host.pool.getconn()
        except psycopg.OperationalError as exc:
            host.count_error(exc)
            if classify(exc, False) is Failure.HOST_DOWN:
                router.host_failed(host, exc)
            else:
                router.wake.set()  # no connection in time: a dead primary can look like a full pool
            raise PrimaryUnavailable(f"cannot get a connection to the primary {host.name}: {exc}") from exc
        host.count_query()
        self.host, self.conn = host, conn
        if self._transaction:
            self._tx = conn.transaction()
            try:
                await self._tx.__aenter__()
            except psycopg.Error as exc:
                await self._release(exc)
                raise self._lost(host, exc) from exc
        return conn

    def _lost(self, host: HostState, exc: BaseException) -> BaseException:
        """The error to give the caller: a clear one when the primary went away mid-write."""
        if classify(exc, False) is Failure.HOST_DOWN:
            return PrimaryUnavailable(
                f"lost the primary {host.name} during a write (it was not retried; it may or may not have "
                f"been applied): {str(exc).strip()}")
        return exc

    async def _release(self, error: BaseException | None) -> None:
        host, conn = self.host, self.conn
        assert host is not None and conn is not None
        self.conn = None
        if error is not None:
            host.count_error(error)
            if classify(error, False) is Failure.HOST_DOWN:
                self._router.host_failed(host, error)
            elif is_read_only_answer(error):
                log.error("the primary %s answered read-only (25006): re-probing roles", host.name)
                self._router.wake.set()
        await host.pool.putconn(conn)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        host, conn = self.host, self.conn
        assert host is not None and conn is not None
        error = exc
        try:
            if self._tx is not None:
                await self._tx.__aexit__(exc_type, exc, tb)
            if exc is None:
                await self._router.remember_write(conn)
        except Exception as late:
            error = late
        await self._release(error)
        if error is None:
            return False
        replacement = self._lost(host, error)
        if replacement is not exc:
            raise replacement from error
        return False


def router_from_settings(settings: Settings) -> Router | None:
    """The router for ``database.*``, or None when no ``database.url`` is set (the router is off)."""
    specs = hosts_from_settings(settings)
    return Router(settings.database, specs) if specs else None


async def probe_status(settings: Settings) -> dict[str, Any] | None:
    """One round of health checks from outside a worker: roles, states and lag, no pool figures.

    For ``cluster replicas status --probe``, when no cluster runs (pools are never opened).
    """
    router = router_from_settings(settings)
    if router is None:
        return None
    try:
        await check_round(router, first=True)
        status = router.status(pools=False)
    finally:
        for host in router.hosts:
            await host.prober.close()
    return status
