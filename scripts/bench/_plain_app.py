"""The app `cluster start` serves, for plain gunicorn: `gunicorn -k aiohttp.GunicornWebWorker _plain_app:runner`.

Settings come from the same loader (defaults + CLUSTER_* env), so both servers
run the same middleware, endpoints and access log.
"""

from __future__ import annotations

from aiohttp import web

from cluster.config import load
from cluster.workers.app import build_runner


async def runner() -> web.AppRunner:
    return await build_runner(load().settings)
