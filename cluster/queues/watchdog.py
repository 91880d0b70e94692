"""The event loop's lag, measured from inside, and a thread that notices when the loop stops turning.

A task ticks every ``PERIOD``; its lateness is the loop's lag (a gauge). A
thread reads the time of the last tick: when the loop has not ticked for a
while, something holds it (a blocking call in an async handler), and no
coroutine can act any more, so the thread asks ``on_blocked`` what to do.
Which job holds the loop is the owner's to say (the consumer answers from
its records of the jobs in hand, ``queues.in_hand.on_the_loop``).

While ``busy()`` is false (a consumer with no job in hand: nothing of the
user's can hold the loop) both tick and check once per ``IDLE_PERIOD``, so an
idle consumer wakes twice a second for its watchdog instead of fifteen times.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

#: How often (s) the tick task runs while the loop runs something worth watching; its lateness is the lag.
PERIOD = 0.1
#: How often (s) the thread checks the last tick while busy.
CHECK_EVERY = 0.2
#: Tick and check period (s) while not busy: an idle consumer wakes twice a second for its watchdog.
IDLE_PERIOD = 1.0
#: The loop counts as blocked once it has not turned for this long (s) beyond its tick period.
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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    async def tick(self) -> None:
        """Run as a task of the watched loop until cancelled."""
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
