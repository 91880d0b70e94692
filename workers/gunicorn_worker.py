"""aiohttp's gunicorn workers with two fixes: gunicorn's listen backlog, and a clean close under uvloop.

Backlog: aiohttp's worker serves each inherited listener through ``web.SockSite``,
whose ``loop.create_server(sock=...)`` calls ``listen()`` again with SockSite's
default backlog of 128, shrinking the accept queue gunicorn opened with
``backlog`` (2048). At 1,100 connections that queue overflows and clients'
SYNs are retried after 1, 3 and 7 s: multi-second tails. ``listen()`` on a
listening socket only resizes its queue, so once the sites serve (the first
heartbeat) each listener is resized back to ``cfg.backlog``.

Close: uvloop takes the file descriptor of a socket it serves and closes it
itself when the server closes; it then calls ``close()`` on the object it was
given. Given gunicorn's socket wrapper, that second close hits a dead
descriptor and gunicorn logs ``Error while closing socket [Errno 9] Bad file
descriptor`` at every stop. A plain ``socket.socket`` duplicate is one uvloop
knows how to hand over, and gunicorn's own object stays valid until the worker exits.
"""

from __future__ import annotations

from typing import Any

from aiohttp.worker import GunicornUVLoopWebWorker, GunicornWebWorker


class _BacklogMixin:
    """Restores gunicorn's listen backlog on every listener once aiohttp's sites serve."""

    sockets: list[Any]
    cfg: Any
    _backlog_restored = False

    def notify(self) -> None:
        # aiohttp calls notify() first right after starting its sites.
        if not self._backlog_restored:
            self._backlog_restored = True
            for listener in self.sockets:
                listener.listen(self.cfg.backlog)
        super().notify()  # type: ignore[misc]


class AsyncioWorker(_BacklogMixin, GunicornWebWorker):
    """aiohttp's asyncio worker with gunicorn's backlog."""


class UVLoopWorker(_BacklogMixin, GunicornUVLoopWebWorker):
    """aiohttp's uvloop worker with gunicorn's backlog, serving duplicates of gunicorn's sockets."""

    def run(self) -> None:
        self.sockets = [listener.sock.dup() for listener in self.sockets]
        super().run()
