"""One health probe of one host, on the probe's own connection with short timeouts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psycopg

from cluster.db.freshness import parse_lsn, wal_end

# One round trip gives the role and the position: the primary's insert LSN (the end of what it
# has written, commit records included even with asynchronous commit) or the replica's replay
# LSN and the age of the last transaction it replayed.
PROBE_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END::text,
       CASE WHEN pg_is_in_recovery()
            THEN EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 END,
       current_setting('wal_block_size')::int
"""


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    in_recovery: bool | None = None
    lsn: int | None = None
    replay_age: float | None = None
    block_size: int = 8192
    error: str | None = None


class Prober:
    """Keeps one connection to a host for its checks; a failed check drops it and reconnects next time."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._conn: psycopg.AsyncConnection | None = None

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(2, round(self.timeout)),
                options=f"-c statement_timeout={int(self.timeout * 1000)}",
                application_name="cluster-db-health",
            )
        return self._conn

    async def _query(self) -> ProbeResult:
        conn = await self._connection()
        cur = await conn.execute(PROBE_SQL)
        row = await cur.fetchone()
        assert row is not None
        in_recovery, lsn, age, block_size = row
        position = None if not lsn else parse_lsn(lsn) if in_recovery else wal_end(parse_lsn(lsn), block_size)
        return ProbeResult(True, bool(in_recovery), position, age, block_size)

    async def probe(self) -> ProbeResult:
        try:
            return await asyncio.wait_for(self._query(), self.timeout)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self.close()
            return ProbeResult(False, error=f"{type(exc).__name__}: {str(exc).strip() or 'timed out'}")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except (psycopg.Error, OSError):
                pass
