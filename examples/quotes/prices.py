"""Quotes: a made-up price per symbol that moves with time, behind the cluster's shared cache."""

from __future__ import annotations

import asyncio
import math
import re
import time
import zlib

from cluster import cached

SYMBOL = re.compile(r"[A-Z]{1,8}")
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AMD")
FEED_LATENCY = 0.02  # what asking the market-data feed costs: the reason for the cache


def valid_symbol(text: str) -> str | None:
    """The symbol in upper case, or None when it is not 1-8 letters."""
    symbol = text.upper()
    return symbol if SYMBOL.fullmatch(symbol) else None


@cached("quotes", ttl=2, key="{symbol}", tags=["quote:{symbol}"])
async def quote(symbol: str) -> dict[str, object]:
    """The current quote of ``symbol``, kept 2 s in Redis for every worker and job of every host."""
    await asyncio.sleep(FEED_LATENCY)
    now = time.time()
    base = 50 + zlib.crc32(symbol.encode()) % 400
    mid = round(base * (1 + 0.02 * math.sin(now / 30 + base)), 2)
    return {"symbol": symbol, "bid": round(mid - 0.01, 2), "ask": round(mid + 0.01, 2), "at": round(now, 3)}
