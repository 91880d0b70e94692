"""A host's up/down state: two failed checks take it out, two good ones bring it back.

A connection error seen by a request takes the host out at once (the request path has just
proved it unreachable; waiting for two more checks would send more requests to it). Pure: the
health loop and the router feed it events and act on the transitions it reports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HostHealth:
    fall: int = 2
    rise: int = 2
    up: bool = True
    failures: int = 0
    successes: int = 0

    def first_check(self, passed: bool) -> None:
        """The check made at start decides the state alone: there is no history to smooth."""
        self.up = passed
        self.failures = self.successes = 0

    def check_passed(self) -> bool:
        """Record a good check; True when this brings the host back up."""
        self.failures = 0
        if self.up:
            return False
        self.successes += 1
        if self.successes >= self.rise:
            self.up = True
            self.successes = 0
            return True
        return False

    def check_failed(self) -> bool:
        """Record a failed check; True when this takes the host down."""
        self.successes = 0
        if not self.up:
            return False
        self.failures += 1
        if self.failures >= self.fall:
            self.up = False
            self.failures = 0
            return True
        return False

    def request_failed(self) -> bool:
        """A request could not reach the host: down at once; True when it was up."""
        was_up = self.up
        self.up = False
        self.failures = 0
        self.successes = 0
        return was_up
