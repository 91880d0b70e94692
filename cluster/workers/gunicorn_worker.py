"""aiohttp's gunicorn workers with gunicorn's listen backlog, and a uvloop worker that accepts in batches.

Backlog: aiohttp's worker serves each inherited listener through ``web.SockSite``,
whose ``loop.create_server(sock=...)`` calls ``listen()`` again with SockSite's
default backlog of 128, shrinking the accept queue gunicorn opened with
``backlog`` (2048). At 1,100 connections that queue overflows and clients'
SYNs are retried after 1, 3 and 7 s: multi-second tails. ``listen()`` on a
listening socket only resizes its queue, so once the sites serve (the first
heartbeat) each listener is resized back to ``cfg.backlog``.

uvloop: libuv accepts one connection per loop iteration, which leaves new
connections seconds in the accept queue under load (see ``workers.batch_accept``).
The uvloop worker runs ``BatchAcceptLoop``, whose servers accept in batches
from gunicorn's listener without re-listening it (so its backlog stays) and
without taking its descriptor (uvloop's own servers close it, and gunicorn then
logs ``Bad file descriptor`` at every stop).

Both report to the arbiter when they serve (``ReadyPipe``: a reload retires
no old worker before a new one serves) and drain on SIGTERM (``DrainingWorker``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web
from aiohttp.worker import GunicornWebWorker

from cluster.workers.state import WORKER_STATE

# A drained connection closes by itself within the keep-alive timeout; this much more is slack.
DRAIN_SLACK = 1.0


class ReadyPipe:
    """A worker's "I serve" to the arbiter: one byte on a pipe opened before the fork.

    The arbiter opens it (gunicorn's ``pre_fork``), keeps the read end, and
    polls it without blocking; the worker writes once its sites listen.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self.ready = False

    def forked(self, in_child: bool) -> None:
        """Each side closes the end it does not use."""
        os.close(self._read if in_child else self._write)

    def announce(self) -> None:
        """In the worker: it serves."""
        os.write(self._write, b"r")
        os.close(self._write)

    def heard(self) -> bool:
        """In the arbiter: has the worker announced it serves?"""
        if not self.ready:
            try:
                self.ready = os.read(self._read, 1) == b"r"
            except BlockingIOError:
                pass
        return self.ready

    def close(self) -> None:
        """In the arbiter, once the worker is reaped (or in a sibling, which has no use for it)."""
        try:
            os.close(self._read)
        except OSError:
            pass


async def connections_closed(server: web.Server, timeout: float) -> None:
    """Until ``server`` has no connection left, at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while server.connections and loop.time() < deadline:
        await asyncio.sleep(0.05)


class DrainingWorker(GunicornWebWorker):
    """aiohttp's worker that says when it serves and drains its keep-alive connections on SIGTERM.

    aiohttp's shutdown closes every idle keep-alive connection at once: a
    client that sends its next request on one at that moment gets a reset
    (gunicorn issues 1236, 3394). Here SIGTERM first drains: /readyz answers
    503, the listeners stop accepting (the other workers accept from the shared
    socket), every response carries ``Connection: close``
    (``workers.middleware``), so each client's next request gets the last
    answer on that connection, and an idle connection closes only after the
    keep-alive timeout, never under a request already sent. Then aiohttp's own
    shutdown runs (requests still in flight finish within its shutdown timeout).
    """

    ready_pipe: ReadyPipe | None = None
    _announced = False
    _runner: web.AppRunner | None = None
    _drain: "asyncio.Task[None] | None" = None

    def load_wsgi(self) -> None:
        super().load_wsgi()
        build = self.wsgi

        async def build_and_keep() -> Any:
            runner = await build()
            self._runner = runner if isinstance(runner, web.AppRunner) else None
            return runner

        self.wsgi = build_and_keep

    def notify(self) -> None:
        # aiohttp calls notify() first right after starting its sites.
        if not self._announced:
            self._announced = True
            self.now_serving()
        super().notify()

    def now_serving(self) -> None:
        self.log.info("worker %s serves", self.pid)
        if self.ready_pipe is not None:
            self.ready_pipe.announce()

    def handle_exit(self, sig: int, frame: Any) -> None:
        # Called from the event loop (aiohttp registers it with add_signal_handler).
        if self._drain is None:
            self._drain = self.loop.create_task(self.drain())

    async def drain(self) -> None:
        """Stop taking connections, close each one only after a response said so or its keep-alive ran out."""
        WORKER_STATE.draining = True
        runner = self._runner
        if runner is not None and runner.server is not None:
            for site in list(runner.sites):
                await site.stop()
            await connections_closed(runner.server, min(self.cfg.keepalive + DRAIN_SLACK,
                                                        self.cfg.graceful_timeout / 2))
        self.alive = False  # aiohttp's serve loop sees it within a second, then runs the runner's cleanup


class AsyncioWorker(DrainingWorker):
    """aiohttp's asyncio worker with gunicorn's backlog."""

    def now_serving(self) -> None:
        for listener in self.sockets:
            listener.listen(self.cfg.backlog)
        super().now_serving()


class UVLoopWorker(DrainingWorker):
    """aiohttp's worker on uvloop (as aiohttp's GunicornUVLoopWebWorker) with batched accepts."""

    def init_process(self) -> None:
        from cluster.workers.batch_accept import BatchAcceptPolicy  # imports uvloop: only this worker runs it

        try:
            asyncio.get_event_loop().close()  # the loop inherited through fork, before the policy changes
        except RuntimeError:
            pass
        asyncio.set_event_loop_policy(BatchAcceptPolicy())
        super().init_process()
