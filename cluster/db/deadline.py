"""A statement with a deadline that holds even when the server is frozen.

``asyncio.timeout`` around ``conn.execute`` is not enough: on cancellation psycopg first
asks the server to cancel the query and waits for that (up to 5 + 5 s), and a stopped
server answers neither. So the statement runs in its own task; at the deadline the caller
gets ``ReadTimeout`` at once and the task is cancelled in the background, where the
connection goes back to its pool (which closes it: it is mid-query) once psycopg gives up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

from cluster.db.errors import ReadTimeout

log = logging.getLogger("db")
_reaping: set[asyncio.Task[None]] = set()


async def _reap(task: asyncio.Future[Any], pool: AsyncConnectionPool, conn: AsyncConnection) -> None:
    try:
        await task
    except BaseException:  # the cancellation we asked for, or the error it ended with: both expected
        pass
    await pool.putconn(conn)


async def execute_within(pool: AsyncConnectionPool, conn: AsyncConnection, timeout: float, host: str,
                         query: Any, params: Any = None, **kwargs: Any) -> AsyncCursor[Any]:
    """``conn.execute`` or ``ReadTimeout`` after ``timeout`` s; on timeout ``conn`` belongs to the pool again."""
    task = asyncio.ensure_future(conn.execute(query, params, **kwargs))
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
    except asyncio.CancelledError:
        # The caller goes away (its request was cancelled): as a plain execute would, wait for
        # psycopg to settle the connection, so the caller's exit returns it idle or closed.
        task.cancel()
        await asyncio.wait((task,))
        raise
    if done:
        return task.result()
    task.cancel()
    reaper = asyncio.create_task(_reap(task, pool, conn), name=f"db-reap-{host}")
    _reaping.add(reaper)
    reaper.add_done_callback(_reaping.discard)
    raise ReadTimeout(f"no answer from {host} within database.read_timeout ({timeout:g} s)")
