"""The trades table, through the replica router: writes on the primary, reads on a replica."""

from __future__ import annotations

from typing import Any

from cluster import Router

SCHEMA = """
CREATE TABLE IF NOT EXISTS quotes_trades (
    id bigserial PRIMARY KEY,
    symbol text NOT NULL,
    side text NOT NULL,
    qty integer NOT NULL,
    price numeric(12, 2) NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
)"""
_ready: set[int] = set()  # routers (by id) whose primary has the table, in this process


async def _ensure_schema(db: Router) -> None:
    """Create the table once per process; the advisory lock keeps concurrent CREATEs from colliding."""
    if id(db) in _ready:
        return
    async with db.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(7327)")
        await conn.execute(SCHEMA)
    _ready.add(id(db))


async def record_trade(db: Router, symbol: str, side: str, qty: int, price: float) -> int:
    """Insert a trade on the primary; its id."""
    await _ensure_schema(db)
    async with db.write() as conn:
        cursor = await conn.execute(
            "INSERT INTO quotes_trades (symbol, side, qty, price) VALUES (%s, %s, %s, %s) RETURNING id",
            (symbol, side, qty, price))
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def recent_trades(db: Router, symbol: str, limit: int = 20) -> dict[str, Any]:
    """The latest trades of ``symbol``, read where the router sends reads, and which server answered."""
    await _ensure_schema(db)
    async with db.read() as conn:
        served = await conn.fetchone("SELECT inet_server_port(), pg_is_in_recovery()")
        rows = await conn.fetchall(
            "SELECT id, side, qty, price::float8, extract(epoch FROM at)::float8 FROM quotes_trades"
            " WHERE symbol = %s ORDER BY id DESC LIMIT %s", (symbol, limit))
    return {
        "symbol": symbol,
        "served_by": {"port": served[0], "replica": served[1]},
        "trades": [{"id": r[0], "side": r[1], "qty": r[2], "price": r[3], "at": r[4]} for r in rows],
    }
