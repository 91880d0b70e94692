"""A draining worker's answers say ``Connection: close``; its drain waits for its connections to close."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cluster.workers.gunicorn_worker import connections_closed
from cluster.workers.middleware import request_middleware
from cluster.workers.state import WORKER_STATE
from tests.support import run_async


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def answers(draining: bool) -> list[tuple[int, str | None]]:
    async def scenario() -> list[tuple[int, str | None]]:
        app = web.Application(middlewares=[request_middleware])
        app.router.add_get("/hello", hello)
        async with TestClient(TestServer(app)) as client:
            WORKER_STATE.draining = draining
            try:
                found = []
                for path in ("/hello", "/missing"):
                    response = await client.get(path)
                    await response.read()
                    found.append((response.status, response.headers.get("Connection")))
                return found
            finally:
                WORKER_STATE.draining = False

    return run_async(scenario)


def test_every_answer_of_a_draining_worker_closes_its_connection() -> None:
    assert answers(draining=True) == [(200, "close"), (404, "close")]


def test_a_serving_worker_keeps_connections_alive() -> None:
    assert answers(draining=False) == [(200, None), (404, None)]


def test_the_drain_waits_until_the_last_connection_is_closed() -> None:
    async def scenario() -> tuple[int, int]:
        app = web.Application()
        app.router.add_get("/hello", hello)
        server = TestServer(app)
        async with TestClient(server) as client:
            response = await client.get("/hello")  # the client keeps this connection open
            await response.read()
            held = len(server.handler.connections)
            waiter = asyncio.ensure_future(connections_closed(server.handler, timeout=60))
            await asyncio.sleep(0.2)
            assert not waiter.done()
            await client.session.close()  # the client's connections, not the server
            await waiter
            return held, len(server.handler.connections)

    assert run_async(scenario) == (1, 0)


def test_the_drain_gives_up_after_its_timeout() -> None:
    async def scenario() -> int:
        app = web.Application()
        app.router.add_get("/hello", hello)
        server = TestServer(app)
        async with TestClient(server) as client:
            await (await client.get("/hello")).read()
            await connections_closed(server.handler, timeout=0.2)
            return len(server.handler.connections)

    assert run_async(scenario) == 1
