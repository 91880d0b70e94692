"""How often the dashboard's login may be tried: a pure policy of (client, time), no I/O.

Each client gets ``free_tries`` wrong tokens; after that it must wait before the
next try, twice as long each time (``base_delay`` up to ``max_delay``). All clients
together get ``overall_limit`` wrong tokens per ``window``: past that, everyone
waits for the window to move on (many addresses, one attacker). A refused or
throttled try is not logged one by one: the counts of a window are taken with
``report`` and logged as one line.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Report:
    """What happened at the login in one window."""

    refused: int
    throttled: int
    clients: int


@dataclass
class LoginThrottle:
    free_tries: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0
    overall_limit: int = 50
    window: float = 60.0
    max_clients: int = 10_000
    _clients: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    _recent: deque[float] = field(default_factory=deque)
    _refused: int = 0
    _throttled: int = 0
    _seen: set[str] = field(default_factory=set)

    def _delay(self, failures: int) -> float:
        if failures < self.free_tries:
            return 0.0
        return min(self.max_delay, self.base_delay * 2 ** (failures - self.free_tries))

    def retry_after(self, client: str, now: float) -> float:
        """Seconds ``client`` must wait before it may try (0: now); a refused wait is counted."""
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        wait = 0.0
        if len(self._recent) >= self.overall_limit:
            wait = self._recent[0] + self.window - now
        failures, last = self._clients.get(client, (0, now))
        wait = max(wait, last + self._delay(failures) - now)
        if wait > 0:
            self._throttled += 1
            self._note(client)
        return max(wait, 0.0)

    def failed(self, client: str, now: float) -> None:
        """A wrong token from ``client``."""
        failures, last = self._clients.pop(client, (0, now))
        if now - last > self.max_delay + self.window:
            failures = 0  # a long pause forgives
        self._clients[client] = (failures + 1, now)
        if len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        self._recent.append(now)
        if len(self._recent) > self.overall_limit:
            self._recent.popleft()
        self._refused += 1
        self._note(client)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _note(self, client: str) -> None:
        if len(self._seen) < self.max_clients:
            self._seen.add(client)

    def report(self) -> Report | None:
        """The counts since the last report (None if nothing happened), and a new window."""
        if not (self._refused or self._throttled):
            return None
        report = Report(self._refused, self._throttled, len(self._seen))
        self._refused = self._throttled = 0
        self._seen = set()
        return report
