"""A user app for tests whose factory takes SLOW_BOOT_SECONDS (default 6) to build: a slow start."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web


async def create_app() -> web.Application:
    await asyncio.sleep(float(os.environ.get("SLOW_BOOT_SECONDS", "6")))
    return web.Application()
