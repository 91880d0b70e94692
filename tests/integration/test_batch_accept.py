"""The uvloop worker's listener takes every waiting connection at one wake-up (libuv alone takes one per
loop iteration, which left connections seconds in the accept queue at 1,100 connections)."""

from __future__ import annotations

import asyncio
import socket

import uvloop

from cluster.workers.batch_accept import BatchAcceptLoop

WAITING = 200


class _Counting(asyncio.Protocol):
    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        type(self).made += 1


def _iterations_to_accept_all(loop: asyncio.AbstractEventLoop) -> tuple[int, int]:
    """Queue WAITING connections on a listener, then serve it; count loop iterations until all are made."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=WAITING * 2)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(WAITING)]
    _Counting.made = 0
    try:
        async def serve() -> int:
            server = await loop.create_server(_Counting, sock=listener, backlog=128)
            iterations = 0
            while _Counting.made < WAITING and iterations < 10 * WAITING:
                await asyncio.sleep(0)
                iterations += 1
            server.close()
            await server.wait_closed()
            return iterations

        return loop.run_until_complete(serve()), _Counting.made
    finally:
        for client in clients:
            client.close()
        listener.close()
        loop.close()


def test_waiting_connections_are_accepted_in_a_few_iterations() -> None:
    iterations, made = _iterations_to_accept_all(BatchAcceptLoop())
    assert made == WAITING
    assert iterations <= 10, f"{iterations} loop iterations to accept {WAITING} waiting connections"


def test_the_control_plain_uvloop_accepts_one_per_iteration() -> None:
    """Why BatchAcceptLoop exists; if this starts failing, libuv accepts in batches again."""
    iterations, made = _iterations_to_accept_all(uvloop.Loop())
    assert made == WAITING
    assert iterations >= WAITING // 2


def test_close_stops_accepting_and_leaves_the_listener_open() -> None:
    loop = BatchAcceptLoop()
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        async def scenario() -> None:
            server = await loop.create_server(_Counting, sock=listener, backlog=128)
            assert server.is_serving() and server.sockets == (listener,)
            server.close()
            await server.wait_closed()
            assert not server.is_serving() and server.sockets == ()
            client = socket.create_connection(listener.getsockname())
            try:
                await asyncio.sleep(0.05)
                conn, _ = listener.accept()  # still listening, and nobody took it
                conn.close()
            finally:
                client.close()

        _Counting.made = 0
        loop.run_until_complete(scenario())
        assert _Counting.made == 0
        assert listener.fileno() != -1
    finally:
        listener.close()
        loop.close()


def test_servers_by_host_and_port_are_uvloops_own() -> None:
    loop = BatchAcceptLoop()
    try:
        server = loop.run_until_complete(loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
        assert type(server).__module__.startswith("uvloop")
        server.close()
    finally:
        loop.close()
