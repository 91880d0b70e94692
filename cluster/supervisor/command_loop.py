"""A queue of commands handled one at a time, in order, with each result on the caller's future.

The supervisor's only way to change its state (``cluster.supervisor.core``):
signal handlers, control-API handlers and periodic tasks ``submit`` or
``post`` commands; ``run`` hands each to its handler until a stop command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("cluster.supervisor.command_loop")
Handler = Callable[[Any], Awaitable[Any]]


class CommandLoop:
    def __init__(self, handlers: dict[type, Handler]) -> None:
        self.handlers = handlers
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue()
        self._closed = False

    def submit(self, command: Any) -> asyncio.Future[Any]:
        """Queue a command; the future gets its result (cancelled once the loop is closed)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.cancel()
        else:
            self._queue.put_nowait((command, future))
        return future

    def post(self, command: Any) -> None:
        """Queue a command nobody waits for (signals, exit reports); ``run`` logs its failure."""
        self.submit(command).add_done_callback(_consume)

    async def run(self, until: type) -> None:
        """Handle the commands one at a time, in order, until one of type ``until`` is handled."""
        while True:
            command, future = await self._queue.get()
            try:
                result = await self.handlers[type(command)](command)
            except ValueError as exc:  # a request the caller got wrong: theirs to report
                if not future.cancelled():
                    future.set_exception(exc)
            except Exception as exc:
                log.exception("command %s failed", type(command).__name__)
                if not future.cancelled():
                    future.set_exception(exc)
            else:
                if not future.cancelled():
                    future.set_result(result)
            if isinstance(command, until):
                return

    def close(self) -> None:
        """Refuse further commands and cancel those still queued."""
        self._closed = True
        while not self._queue.empty():
            self._queue.get_nowait()[1].cancel()


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a posted command's outcome so asyncio does not warn; the loop logged any failure."""
    if not future.cancelled():
        future.exception()
