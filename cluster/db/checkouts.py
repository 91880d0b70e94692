"""What a checkout hands the caller: a read connection that fails over, or a primary connection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import TooManyRequests

from cluster.config.settings import DatabaseSettings
from cluster.observability.context import read_your_writes_var
from cluster.db import metrics
from cluster.db.deadline import execute_within
from cluster.db.errors import Failure, NoHostAvailable, PrimaryUnavailable, ReadTimeout, classify, is_read_only_answer
from cluster.db.freshness import parse_lsn
from cluster.db.host_state import HostState
from cluster.db.hygiene import note_duration
from cluster.db.selection import Routing, pick_read_host, replicas_to_verify, token_lsn
from cluster.db.strategies import Strategy



class Router(Protocol):
    """What a checkout needs of the router (``db.router.Router``): its routing snapshot, and reports back."""

    settings: DatabaseSettings
    routing: Routing
    replayed: dict[str, int | None]
    by_name: dict[str, HostState]
    strategy: Strategy
    wake: asyncio.Event

    def require_open(self) -> None: ...

    def host_failed(self, host: HostState, exc: BaseException) -> None: ...

    def note_replayed(self, host: HostState, position: int) -> None: ...

    async def remember_write(self, conn: AsyncConnection) -> None: ...

log = logging.getLogger("db")


class ReadConnection:
    """A checked-out read connection that moves to another host if the first statement fails.

    Until a statement has returned a result, a lost connection, a full pool, a recovery
    conflict or no answer within ``database.read_timeout`` sends the statement to the next host
    (another fresh replica, then the fallback). A host's pool is waited for only
    ``database.checkout_wait`` while another host is left to try, and a host whose breaker is
    open (``db.outlier``) is skipped unless every host is.
    After that, errors reach the caller: what it has already read may depend on the host.
    ``connection`` gives the psycopg connection itself, without that protection.
    """

    __slots__ = ("_router", "_must_see", "_tried", "_delivered", "_admitted", "host", "conn")

    def __init__(self, router: Router) -> None:
        self._router = router
        token = read_your_writes_var.get()
        self._must_see = None if token is None else token_lsn(token, time.time(), router.settings.sticky_window)
        self._tried: list[str] = []
        self._delivered = False
        self._admitted: HostState | None = None  # the host whose breaker awaits this checkout's outcome
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
        candidates = [n for n in replicas_to_verify(router.routing, router.replayed, must_see)
                      if not router.by_name[n].breaker.is_open]
        if not candidates:
            return False
        host = router.by_name[router.strategy.choose(candidates)]
        conn: AsyncConnection | None = None
        try:
            conn = await host.pool.getconn(timeout=router.settings.checkout_wait)
            cur = await execute_within(host.pool, conn, router.settings.read_timeout, host.name,
                                       "SELECT pg_last_wal_replay_lsn()::text")
            row = await cur.fetchone()
        except ReadTimeout as exc:  # the connection went back to the pool with the abandoned query
            self._failed(host, exc, Failure.TIMEOUT)
            return False
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
        lost = exc is not None and classify(exc, False) is Failure.HOST_DOWN
        self._settle(lost)
        if lost:
            # Lost while the caller used the connection directly; idempotent if execute() saw it first.
            self._router.host_failed(host, exc)
        await host.pool.putconn(conn)

    def _pick(self) -> str | None:
        """The next host to try: hosts ejected by their breaker only when no other is left."""
        router = self._router
        ejected = [h.name for h in router.hosts if h.breaker.is_open]
        name = pick_read_host(router.routing, router.strategy, router.replayed, self._must_see,
                              [*self._tried, *ejected] if ejected else self._tried)
        if name is None and ejected:
            name = pick_read_host(router.routing, router.strategy, router.replayed, self._must_see, self._tried)
        return name

    def _others_left(self, name: str, tried: Collection[str]) -> bool:
        routing = self._router.routing
        return any(n != name and n not in tried for n in (*routing.fresh_replicas, *routing.fallback))

    def _settle(self, failed: bool | None) -> None:
        """Report this checkout's outcome to the breaker of the host it ran on (None: neither)."""
        host, self._admitted = self._admitted, None
        if host is None:
            return
        if failed is None:
            host.breaker.forgo()
        else:
            host.breaker.done(failed, 0.0)

    async def _acquire(self, last_error: BaseException | None) -> None:
        router = self._router
        while True:
            name = self._pick()
            if name is None:
                raise NoHostAvailable(
                    f"no database host could serve the read (tried: {', '.join(self._tried) or 'none usable'})"
                ) from last_error
            host = router.by_name[name]
            if not host.breaker.allow():  # half-open, its trial read already out
                self._tried.append(name)
                continue
            self._admitted = host
            wait = router.settings.checkout_wait if self._others_left(name, self._tried) else None
            try:
                self.conn = await host.pool.getconn(timeout=wait)
            except (psycopg.OperationalError, TooManyRequests) as exc:
                failure = Failure.BUSY if isinstance(exc, TooManyRequests) else classify(exc, False)
                # A full pool is no verdict on a host, unless its last read failed: then its
                # connections are likely stuck on a hung server (a pool cannot grow into one either).
                self._settle(None if failure is Failure.BUSY and not host.breaker.failing else True)
                self._failed(host, exc, failure)
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
        elif failure in (Failure.BUSY, Failure.TIMEOUT):
            self._router.wake.set()  # a pool that cannot connect, or no answer, may hide a dead host: check now

    @property
    def connection(self) -> AsyncConnection:
        """The psycopg connection; using it directly gives up failover for this checkout."""
        assert self.conn is not None, "use inside `async with router.read()`"
        self._delivered = True
        return self.conn

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> AsyncCursor[Any]:
        """``AsyncConnection.execute``, retried on another host when it fails before any result
        (or gives none within ``database.read_timeout``)."""
        settings = self._router.settings
        while True:
            host, conn = self.host, self.conn
            assert host is not None and conn is not None, "use inside `async with router.read()`"
            started = time.perf_counter()
            try:
                cursor = await execute_within(host.pool, conn, settings.read_timeout, host.name, query, params,
                                              **kwargs)
            except ReadTimeout as exc:  # the connection went back to its pool with the abandoned query
                metrics.READ_TIMEOUTS.labels(host.name).inc()
                self.conn = None
                self._settle(True)
                if self._delivered:
                    host.count_error(exc)
                    raise
                self._failed(host, exc, Failure.TIMEOUT)
                await self._acquire(exc)
                continue
            except Exception as exc:
                failure = None if self._delivered else classify(exc, host.role == "replica")
                if failure is None:
                    if classify(exc, False) is Failure.HOST_DOWN:
                        host.count_error(exc)
                        self._router.host_failed(host, exc)
                    raise
                self._settle(None if failure in (Failure.BUSY, Failure.RECOVERY_CONFLICT) else True)
                self._failed(host, exc, failure)
                self.conn = None
                await host.pool.putconn(conn)
                await self._acquire(exc)
                continue
            note_duration(host.name, host.role, query, time.perf_counter() - started, settings.slow_query_ms)
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
