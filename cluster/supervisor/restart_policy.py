"""When to restart a dead child: exponential backoff and crash-loop detection.

Pure: it sees only the times of deaths it is told about, so it is tested
without processes or sleeps. The supervisor's command loop asks it, once per
exit a child reports (``Supervisor.handle_child_exit``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartDecision:
    delay: float
    crash_loop: bool
    deaths_in_window: int
    reason: str = "crashed"
    """``crashed`` (it left on its own), or ``restarted`` (an operator asked for the exit)."""


@dataclass
class RestartPolicy:
    """Backoff doubles with each death inside the window and resets once a child lives through it.

    More than ``crash_loop_deaths`` deaths within ``crash_loop_window`` seconds
    is a crash loop: the caller raises an alert, and the delay is already at
    or near its maximum, so there is no fork storm.
    """

    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    crash_loop_deaths: int = 5
    crash_loop_window: float = 60.0
    deaths: deque[float] = field(default_factory=deque)

    def record_death(self, now: float) -> RestartDecision:
        """Note a death at ``now`` and say how long to wait before the restart."""
        self.deaths.append(now)
        recent = self._in_window(now)
        delay = min(self.backoff_max, self.backoff_initial * (2 ** (recent - 1)))
        return RestartDecision(delay=delay, crash_loop=recent > self.crash_loop_deaths, deaths_in_window=recent)

    def requested_exit(self, now: float) -> RestartDecision:
        """An exit an operator asked for (a restart): start again at once; it is no death, so it adds no backoff
        and never makes a crash loop (the deaths before it still count until they leave the window)."""
        recent = self._in_window(now)
        return RestartDecision(delay=0.0, crash_loop=recent > self.crash_loop_deaths, deaths_in_window=recent,
                               reason="restarted")

    def _in_window(self, now: float) -> int:
        while self.deaths and now - self.deaths[0] > self.crash_loop_window:
            self.deaths.popleft()
        return len(self.deaths)
