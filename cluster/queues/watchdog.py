"""The event loop's lag, measured from inside, and a thread that notices when the loop stops turning.

A task ticks every ``PERIOD``; its lateness is the loop's lag (a gauge). A
thread reads the time of the last tick: when the loop has not ticked for a
while, something holds it (a blocking call in an async handler), and no
coroutine can act any more, so the thread asks ``on_blocked`` what to do.
It also tells which coroutine holds the loop, by looking at the loop
thread's stack for a frame of a given function.

While ``busy()`` is false (a consumer with no job in hand: nothing of the
user's can hold the loop) both tick and check once per ``IDLE_PERIOD``, so an
idle consumer wakes twice a second for its watchdog instead of fifteen times.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

PERIOD = 0.1
CHECK_EVERY = 0.2
IDLE_PERIOD = 1.0
BLOCKED_AFTER = 0.5


class LoopWatchdog:
    def __init__(self, on_blocked: Callable[[float], bool], lag_gauge: Any | None = None,
                 busy: Callable[[], bool] = lambda: True) -> None:
        """``on_blocked(seconds)`` runs in the watchdog thread; True ends the watch (the process is going).
        ``busy()`` (read from both threads) says whether the loop runs anything worth watching closely."""
        self.on_blocked = on_blocked
        self.lag_gauge = lag_gauge
        self.busy = busy
        self.lag = 0.0
        self.period = PERIOD
        self.last_tick = time.monotonic()
        self.loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    async def tick(self) -> None:
        """Run as a task of the watched loop until cancelled."""
        self.loop_thread = threading.get_ident()
        self.last_tick = time.monotonic()
        if not self._thread.is_alive():
            self._thread.start()
        try:
            while True:
                before = time.monotonic()
                self.period = PERIOD if self.busy() else IDLE_PERIOD
                await asyncio.sleep(self.period)
                now = time.monotonic()
                self.lag = max(0.0, now - before - self.period)
                self.last_tick = now
                if self.lag_gauge is not None:
                    self.lag_gauge.set(self.lag)
        finally:
            self._stop.set()

    def blocked_for(self) -> float:
        """Seconds since the loop last turned, beyond its tick period."""
        return max(0.0, time.monotonic() - self.last_tick - self.period)

    def _watch(self) -> None:
        while not self._stop.wait(CHECK_EVERY if self.busy() else IDLE_PERIOD):
            blocked = self.blocked_for()
            if blocked >= BLOCKED_AFTER and self.on_blocked(blocked):
                return

    def frame_locals_of(self, code: CodeType) -> dict[str, Any] | None:
        """The locals of the innermost frame running ``code`` on the loop thread now, or None."""
        frame: FrameType | None = sys._current_frames().get(self.loop_thread)
        while frame is not None:
            if frame.f_code is code:
                return dict(frame.f_locals)
            frame = frame.f_back
        return None
