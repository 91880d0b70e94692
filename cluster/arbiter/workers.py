"""aiohttp's gunicorn workers, listening with gunicorn's backlog instead of aiohttp's 128.

aiohttp's worker serves each inherited listener through ``web.SockSite``, whose
``loop.create_server(sock=...)`` calls ``listen()`` again with SockSite's
default backlog of 128, shrinking the accept queue gunicorn opened with
``backlog`` (2048). At 1,100 connections that queue overflows and clients'
SYNs are retried after 1, 3 and 7 s: multi-second tails. ``listen()`` on a
listening socket only resizes its queue, so once the sites are serving (the
first heartbeat) each listener is resized back to ``cfg.backlog``.
"""

from __future__ import annotations

from aiohttp.worker import GunicornUVLoopWebWorker, GunicornWebWorker


class _BacklogMixin:
    """Restores gunicorn's listen backlog on every listener once aiohttp's sites serve."""

    sockets: list
    cfg: object
    _backlog_restored = False

    def notify(self) -> None:
        # aiohttp calls notify() first right after starting its sites.
        if not self._backlog_restored:
            self._backlog_restored = True
            for listener in self.sockets:
                listener.listen(self.cfg.backlog)  # type: ignore[attr-defined]
        super().notify()  # type: ignore[misc]


class AsyncioWorker(_BacklogMixin, GunicornWebWorker):
    """aiohttp's asyncio worker with gunicorn's backlog."""


class UVLoopWorker(_BacklogMixin, GunicornUVLoopWebWorker):
    """aiohttp's uvloop worker with gunicorn's backlog."""
