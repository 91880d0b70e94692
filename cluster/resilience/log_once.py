"""A warning logged at most once per interval, with how many times it happened since the last line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any


class EveryInterval:
    """``warn()`` on every occurrence; a log line comes out at most once per ``interval`` seconds."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._suppressed = 0

    def warn(self, message: str, *args: Any, **extra: Any) -> bool:
        """Count one occurrence; True when it was logged."""
        now = self.clock()
        if now < self._next:
            self._suppressed += 1
            return False
        self.logger.warning(message, *args, extra={**extra, "suppressed_since_last": self._suppressed})
        self._suppressed = 0
        self._next = now + self.interval
        return True
