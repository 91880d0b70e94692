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
"""

from __future__ import annotations

import asyncio

from aiohttp.worker import GunicornWebWorker


class AsyncioWorker(GunicornWebWorker):
    """aiohttp's asyncio worker with gunicorn's backlog."""

    _backlog_restored = False

    def notify(self) -> None:
        # aiohttp calls notify() first right after starting its sites.
        if not self._backlog_restored:
            self._backlog_restored = True
            for listener in self.sockets:
                listener.listen(self.cfg.backlog)
        super().notify()


class UVLoopWorker(GunicornWebWorker):
    """aiohttp's worker on uvloop (as aiohttp's GunicornUVLoopWebWorker) with batched accepts."""

    def init_process(self) -> None:
        from cluster.workers.batch_accept import BatchAcceptPolicy  # imports uvloop: only this worker runs it

        try:
            asyncio.get_event_loop().close()  # the loop inherited through fork, before the policy changes
        except RuntimeError:
            pass
        asyncio.set_event_loop_policy(BatchAcceptPolicy())
        super().init_process()
