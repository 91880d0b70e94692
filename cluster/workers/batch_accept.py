"""uvloop's event loop with socket servers that accept every waiting connection at each wake-up.

Since libuv 1.45 (libuv/libuv#3696, "unix: don't accept() connections in a
loop") a libuv listener accepts one connection per event-loop iteration. A busy
worker's iteration serves hundreds of connections and takes 100-200 ms, so at
1,100 new connections the accept queue drains at a few connections per
iteration: clients wait seconds before their first byte is read (measured: the
accept queue still held 255 connections 4 s into a wrk run, p99 7.2 s, with no
SYN dropped). asyncio's selector loop accepts up to ``backlog`` connections per
wake-up and has no such tail.

``BatchAcceptLoop.create_server(sock=...)`` serves an already-listening socket
the asyncio way: a reader on the listener accepts up to ``backlog`` connections
per wake-up and hands each one to uvloop with ``connect_accepted_socket`` (its
transports stay uvloop's). The listener itself is never re-listened or closed:
gunicorn opened it with its ``backlog`` and closes it when the worker exits.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any, Callable

import uvloop

log = logging.getLogger("workers.http")

# accept() errors that mean "no memory or descriptors right now": stop accepting for a while, as asyncio does
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
RESOURCE_PAUSE_S = 1.0


class BatchAcceptServer(asyncio.AbstractServer):
    """Serves one listening socket: accepts up to ``batch`` connections per readable event."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Callable[[], asyncio.BaseProtocol], batch: int, tls: dict[str, Any]) -> None:
        self._loop = loop
        self._sock = sock
        self._protocol_factory = protocol_factory
        self._batch = max(1, batch)
        self._tls = tls
        self._serving = False
        self._closed = False
        self._resume: asyncio.TimerHandle | None = None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._serving or self._closed:
            return
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock, self._accept_batch)
        self._serving = True

    async def serve_forever(self) -> None:
        await self.start_serving()
        while not self._closed:
            await asyncio.sleep(3600)

    def close(self) -> None:
        """Stops accepting; connections already accepted are the protocol's to finish."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None

    async def wait_closed(self) -> None:
        return None

    def _stop_reading(self) -> None:
        if self._serving:
            self._loop.remove_reader(self._sock)
            self._serving = False

    def _accept_batch(self) -> None:
        for _ in range(self._batch):
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                log.warning("accept failed, pausing new connections",
                            extra={"error": str(exc), "pause_s": RESOURCE_PAUSE_S})
                self._stop_reading()
                self._resume = self._loop.call_later(RESOURCE_PAUSE_S, self._resume_accepting)
                return
            conn.setblocking(False)
            self._loop.create_task(self._attach(conn))

    def _resume_accepting(self) -> None:
        self._resume = None
        if not self._closed:
            self._loop.add_reader(self._sock, self._accept_batch)
            self._serving = True

    async def _attach(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._protocol_factory, conn, **self._tls)
        except OSError:
            # the client went away between accept() and the transport's start
            conn.close()


class BatchAcceptLoop(uvloop.Loop):  # type: ignore[misc]
    """uvloop whose ``create_server(sock=...)`` (what aiohttp's SockSite calls) accepts in batches."""

    async def create_server(self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: Any = None,
                            port: Any = None, *, sock: socket.socket | None = None, backlog: int = 100,
                            ssl: Any = None, start_serving: bool = True, **kwargs: Any) -> asyncio.AbstractServer:
        if sock is None or host is not None or port is not None:
            return await super().create_server(protocol_factory, host, port, sock=sock, backlog=backlog, ssl=ssl,
                                               start_serving=start_serving, **kwargs)
        tls = {} if ssl is None else {"ssl": ssl, **{key: kwargs[key] for key in (
            "ssl_handshake_timeout", "ssl_shutdown_timeout") if kwargs.get(key) is not None}}
        server = BatchAcceptServer(self, sock, protocol_factory, backlog, tls)
        if start_serving:
            await server.start_serving()
        return server


class BatchAcceptPolicy(uvloop.EventLoopPolicy):  # type: ignore[misc]
    """Makes ``asyncio.new_event_loop()`` return a ``BatchAcceptLoop``."""

    def _loop_factory(self) -> BatchAcceptLoop:
        return BatchAcceptLoop()
