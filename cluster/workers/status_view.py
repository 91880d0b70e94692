"""A serialized status kept for at most ``max_age`` seconds, so a status endpoint costs the same at any rate."""

from __future__ import annotations

import time


class StatusView:
    """The last body built and when; ``current()`` is None once it is older than ``max_age``."""

    def __init__(self, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self._body: bytes | None = None
        self._at = 0.0

    def current(self) -> bytes | None:
        if self._body is None or time.monotonic() - self._at >= self.max_age:
            return None
        return self._body

    def store(self, body: bytes) -> bytes:
        self._body, self._at = body, time.monotonic()
        return body

    def clear(self) -> None:
        self._body = None
