"""Where one generator process records outcomes: per phase (stress step) and per second of the run."""

from __future__ import annotations

from typing import Any

from cluster.loadgen.stats import WINDOW_DIGITS, Tally, new_histogram, record


class Recorder:
    """Tallies and histograms of one process; ``phase`` is moved by the stress ramp.

    The per-second histograms are encoded as each second closes, so a long
    endurance run keeps a few hundred bytes a second, not a live histogram.
    """

    def __init__(self, origin: float, phases: int = 1) -> None:
        self.origin = origin
        self.phase = 0
        self.tallies = [Tally() for _ in range(phases)]
        self.hists = [new_histogram() for _ in range(phases)]
        self.requests = 0
        self.errors = 0
        self.late_sends = 0  # open loop: sends the event loop made late although the connection was free
        self._second = 0
        self._window_requests = 0
        self._window_errors = 0
        self._window_hist = new_histogram(WINDOW_DIGITS)
        self.timeline: list[list[Any]] = []

    def record(self, latency_s: float | None, error: str | None, done: float) -> None:
        """One finished request: its error class (None for a success) and latency (None when unknown)."""
        second = int(done - self.origin) if done > self.origin else 0
        if second != self._second:
            self._close_window(second)
        self.tallies[self.phase].add(error)
        self.requests += 1
        self._window_requests += 1
        if error is not None:
            self.errors += 1
            self._window_errors += 1
        if latency_s is not None:
            latency_us = int(latency_s * 1_000_000)
            record(self.hists[self.phase], latency_us)
            record(self._window_hist, latency_us)

    def _close_window(self, next_second: int) -> None:
        if self._window_requests:
            self.timeline.append([self._second, self._window_requests, self._window_errors,
                                  self._window_hist.encode()])
            self._window_hist.reset()
        self._second = next_second
        self._window_requests = 0
        self._window_errors = 0

    def result(self) -> dict[str, Any]:
        """Everything the orchestrator merges, in picklable form."""
        self._close_window(self._second)
        return {
            "phases": [{"tally": t.to_dict(), "hist": h.encode()} for t, h in zip(self.tallies, self.hists)],
            "timeline": self.timeline,
            "late_sends": self.late_sends,
        }
