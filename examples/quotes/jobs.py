"""The quotes demo's jobs (``--jobs quotes.jobs``): an order fill at high priority, a cache warm-up in background."""

from __future__ import annotations

import os
from typing import Any

from cluster import current_job, job
from quotes.prices import quote
from quotes.store import record_trade

FILL_ORDER = "quotes.fill_order"
REFRESH_QUOTES = "quotes.refresh_quotes"


@job(FILL_ORDER, priority="high")
async def fill_order(symbol: str, side: str, qty: int) -> dict[str, Any]:
    """Fill at the current quote (the cached one), record the trade when a database is configured."""
    ctx = current_job()
    price = (await quote(symbol))["ask" if side == "buy" else "bid"]
    trade_id = await record_trade(ctx.db, symbol, side, qty, price) if ctx.db is not None else None
    return {"symbol": symbol, "side": side, "qty": qty, "price": price, "trade_id": trade_id,
            "filled_by": os.getpid(), "attempt": ctx.attempt}


@job(REFRESH_QUOTES, priority="background")
async def refresh_quotes(symbols: list[str]) -> dict[str, Any]:
    """Recompute every quote now, so the next readers hit a fresh cache."""
    for symbol in symbols:
        await quote.invalidate(symbol)  # type: ignore[attr-defined]
        await quote(symbol)
    return {"refreshed": symbols, "by": os.getpid()}
