"""What a checkout hands the caller: a read connection that fails over, or a primary connection."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import TooManyRequests

from config.settings import DatabaseSettings
from observability.context import read_your_writes_var
from db.errors import Failure, NoHostAvailable, PrimaryUnavailable, classify, is_read_only_answer
from db.freshness import parse_lsn
from db.host_state import HostState
from db.selection import Routing, pick_read_host, replicas_to_verify, token_lsn
from db.strategies import Strategy



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
