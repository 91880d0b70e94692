"""The supervisor's end of the arbiter's exit reports: a datagram socket, and a tally by reason."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster.arbiter.exits import FAILURES, decode

log = logging.getLogger("cluster.supervisor.worker_exits")


def as_requested(reason: str, recycled: bool) -> str:
    """The reason to count for an exit: ``recycled`` when the supervisor asked the worker to leave.

    The arbiter did not ask, so it says ``crashed`` (or ``timeout`` when the worker
    outlived its graceful stop); a recycle is neither, and never feeds a crash loop.
    Its own reasons (retired, reload, shutdown) stand: it asked too.
    """
    return "recycled" if recycled and reason in FAILURES else reason


class ExitTally:
    """Worker exits by reason; failures (crashes, timeouts) within ``window`` seconds make a crash loop.

    Pure: it is told each exit and the time, so it is tested without processes.
    """

    def __init__(self, deaths: int, window: float) -> None:
        self.deaths = deaths
        self.window = window
        self.by_reason: Counter[str] = Counter()
        self._failures: deque[float] = deque()

    def record(self, reason: str, now: float) -> None:
        self.by_reason[reason] += 1
        if reason in FAILURES:
            self._failures.append(now)

    def crash_looping(self, now: float) -> bool:
        while self._failures and now - self._failures[0] > self.window:
            self._failures.popleft()
        return len(self._failures) >= self.deaths

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, deliver: Callable[[int, str], Any]) -> None:
        self.deliver = deliver

    def datagram_received(self, data: bytes, addr: Any) -> None:
        report = decode(data)
        if report is None:
            log.warning("ignored a datagram that is no exit report", extra={"size": len(data)})
            return
        self.deliver(*report)


async def listen(path: Path, deliver: Callable[[int, str], Any]) -> asyncio.DatagramTransport:
    """Receive the arbiter's reports on ``path`` (mode 0600); ``deliver(pid, reason)`` for each."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: _Receiver(deliver), sock=sock)
    return transport
