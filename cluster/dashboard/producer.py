"""One producer, many listeners: the snapshot is built and each page rendered once per tick, whoever watches.

Every connected page holds a one-slot mailbox. A tick builds the snapshot
once, renders each page that somebody watches once, encodes that as one
SSE message, and drops the same bytes into every mailbox of that page; a
slow client only ever misses stale versions. With nobody watching, the
producer sleeps; the history sampler keeps its own slower pace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("cluster.dashboard.producer")

CLOSED = b""  # what a mailbox yields once the producer is closed: the stream ends
Build = Callable[[], Awaitable[dict[str, Any]]]
Render = Callable[[str, dict[str, Any]], str]


class Mailbox:
    """Holds the newest message for one client; older unread ones are replaced."""

    def __init__(self, page: str) -> None:
        self.page = page
        self._message: bytes | None = None
        self._ready = asyncio.Event()

    def put(self, message: bytes) -> None:
        self._message = message
        self._ready.set()

    async def get(self, timeout: float) -> bytes | None:
        """The newest message, or None when none came within ``timeout``."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return None
        self._ready.clear()
        message, self._message = self._message, None
        return message


def sse_message(version: int, page: str, html: str, at: float) -> bytes:
    """An SSE ``snapshot`` event: the page's rendered live parts, as JSON on one data line."""
    data = json.dumps({"version": version, "page": page, "at": at, "html": html}, separators=(",", ":"))
    return f"id: {version}\nevent: snapshot\ndata: {data}\n\n".encode()


class Producer:
    def __init__(self, build: Build, render: Render, interval: float = 1.0) -> None:
        self.build = build
        self.render = render
        self.interval = interval
        self.version = 0
        self.builds = 0
        self.renders = 0
        self.latest: dict[str, Any] = {}
        self.messages: dict[str, bytes] = {}
        self._mailboxes: set[Mailbox] = set()
        self._someone = asyncio.Event()
        self._poke = asyncio.Event()
        self._stale = False
        self._building = asyncio.Lock()
        self.closed = False

    @property
    def listeners(self) -> int:
        return len(self._mailboxes)

    def subscribe(self, page: str) -> Mailbox:
        box = Mailbox(page)
        if self.closed:
            box.put(CLOSED)
            return box
        self._mailboxes.add(box)
        if page in self.messages:
            box.put(self.messages[page])
        self._someone.set()
        return box

    def unsubscribe(self, box: Mailbox) -> None:
        self._mailboxes.discard(box)
        if not self._mailboxes:
            self._someone.clear()

    def close(self) -> None:
        """End every stream (the supervisor stops: its listener must not wait on open dashboards)."""
        self.closed = True
        for box in self._mailboxes:
            box.put(CLOSED)

    def changed(self) -> None:
        """Something changed (an action ran): tick now instead of at the next second."""
        self._stale = True
        self._poke.set()

    async def current(self) -> dict[str, Any]:
        """The latest snapshot if it is younger than one interval and nothing changed since, else a new one."""
        async with self._building:  # pollers arriving together share one build
            if self.latest and not self._stale and time.time() - self.latest["at"] < self.interval:
                return self.latest
            return await self.tick()

    async def tick(self) -> dict[str, Any]:
        """Build once, render each watched page once, fan out."""
        self._stale = False
        snapshot = await self.build()
        self.builds += 1
        self.version += 1
        self.latest = snapshot
        pages = {box.page for box in self._mailboxes}
        self.messages = {}
        for page in pages:
            self.messages[page] = sse_message(self.version, page, self.render(page, snapshot), snapshot["at"])
            self.renders += 1
        for box in list(self._mailboxes):
            if not self.closed:
                box.put(self.messages[box.page])
        return snapshot

    async def run(self) -> None:
        while True:
            await self._someone.wait()
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:
                log.exception("dashboard snapshot failed")
            self._poke.clear()
            try:
                await asyncio.wait_for(self._poke.wait(), max(0.0, self.interval - (time.monotonic() - started)))
            except TimeoutError:
                pass
