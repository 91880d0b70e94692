"""The quotes demo's HTTP side (``cluster start 'quotes.app:make_app()' --jobs quotes.jobs``).

``GET /`` lists the routes (``ROUTES``). Without a database (no DATABASE_URL) the two trade
routes answer 503 with a JSON body.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cluster import DB_KEY, QueueFull, QueueUnavailable, Router, enqueue, rate_limit
from quotes.jobs import FILL_ORDER, REFRESH_QUOTES
from quotes.prices import SYMBOLS, quote, valid_symbol
from quotes.store import record_trade, recent_trades

routes = web.RouteTableDef()
ROUTES = {
    "GET /api/quotes/{symbol}": "a cached read (cached: kept in Redis, shared by every process)",
    "POST /api/orders": 'a high-priority job (enqueue), rate limited per client IP (rate_limit); '
                        'body {"symbol": "AAPL", "side": "buy", "qty": 10}',
    "POST /api/quotes/refresh": "background work: recompute every quote into the cache",
    "GET /api/trades/{symbol}": "a read through the replica router (DB_KEY): a replica answers",
    "POST /api/trades": "a write through the router: the primary; same body as an order",
}
SIDES = ("buy", "sell")
MAX_QTY = 1_000_000


class Refused(Exception):
    """A request this app will not serve: answered with ``status`` and a JSON body saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@web.middleware
async def refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except Refused as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)


def _symbol(text: str) -> str:
    symbol = valid_symbol(text)
    if symbol is None:
        raise Refused(400, f"symbol {text!r} is not 1 to 8 letters")
    return symbol


async def _trade(request: web.Request) -> tuple[str, str, int]:
    """(symbol, side, qty) from a JSON body ``{"symbol": "AAPL", "side": "buy", "qty": 10}``."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, 'the body must be an object: {"symbol": "AAPL", "side": "buy", "qty": 10}')
    side, qty = body.get("side"), body.get("qty")
    if side not in SIDES:
        raise Refused(400, f"side must be one of {', '.join(SIDES)}")
    if not isinstance(qty, int) or isinstance(qty, bool) or not 0 < qty <= MAX_QTY:
        raise Refused(400, f"qty must be a whole number from 1 to {MAX_QTY}")
    return _symbol(str(body.get("symbol", ""))), side, qty


async def _enqueued(name: str, *args: Any, priority: str | None = None) -> web.Response:
    """Enqueue; 202 with where to follow the job (a full or unreachable queue is a 429 or 503, not a 500)."""
    try:
        job = await enqueue(name, *args, priority=priority)
    except QueueFull as exc:
        raise Refused(429, str(exc)) from None
    except QueueUnavailable as exc:
        raise Refused(503, str(exc)) from None
    return web.json_response({"job_id": job.id, "queue": job.priority, "state": job.state,
                              "follow": f"/api/enterprise/jobs/{job.id}"}, status=202)


def _router(request: web.Request) -> Router:
    router = request.app.get(DB_KEY)
    if router is None:
        raise Refused(503, "no database is configured: set DATABASE_URL (make run starts a local one when "
                           "PostgreSQL is installed)")
    return router


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return web.json_response({"demo": "quotes", "routes": ROUTES})


@routes.get("/api/quotes/{symbol}")
async def get_quote(request: web.Request) -> web.Response:
    return web.json_response(await quote(_symbol(request.match_info["symbol"])))


@routes.post("/api/orders")
@rate_limit("20/second")
async def place_order(request: web.Request) -> web.Response:
    return await _enqueued(FILL_ORDER, *await _trade(request))


@routes.post("/api/quotes/refresh")
async def refresh(request: web.Request) -> web.Response:
    return await _enqueued(REFRESH_QUOTES, list(SYMBOLS))


@routes.get("/api/trades/{symbol}")
async def trades(request: web.Request) -> web.Response:
    router = _router(request)
    return web.json_response(await recent_trades(router, _symbol(request.match_info["symbol"])))


@routes.post("/api/trades")
async def add_trade(request: web.Request) -> web.Response:
    router = _router(request)
    symbol, side, qty = await _trade(request)
    price = (await quote(symbol))["ask" if side == "buy" else "bid"]
    trade_id = await record_trade(router, symbol, side, qty, price)
    return web.json_response({"id": trade_id, "symbol": symbol, "side": side, "qty": qty, "price": price},
                             status=201)


def make_app() -> web.Application:
    app = web.Application(middlewares=[refusals])
    app.add_routes(routes)
    return app
