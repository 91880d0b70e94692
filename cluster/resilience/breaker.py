"""Circuit breakers for outbound calls (HTTP upstreams, Redis, database hosts), one per name per process.

    upstream = breaker("payments", BreakerPolicy(failure_rate=0.5, minimum_calls=20))

    async with upstream.call():          # CircuitOpen at once while the breaker is open
        await session.get(...)

    @upstream                            # the same, as a decorator of an async function
    async def charge(...): ...

An exception leaving the block is a failure unless it is one of ``ignore`` (a 404 from the
upstream is the caller's business, not the upstream's health). The state machine is
``resilience.breaker_policy``; this module adds the clock, the log lines and the metrics.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from prometheus_client import Counter, Gauge

from cluster.resilience.breaker_policy import BreakerPolicy, BreakerState, Outcome, admit, forgo, record, window_counts

log = logging.getLogger("resilience.breaker")
P = ParamSpec("P")
R = TypeVar("R")
STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}

STATE = Gauge("cluster_breaker_state", "Circuit breaker state per process: 0 closed, 1 half-open, 2 open "
              "(absent until its first transition)",
              ["breaker"], multiprocess_mode="livemax")
TRANSITIONS = Counter("cluster_breaker_transitions", "Circuit breaker state changes, by the state entered",
                      ["breaker", "to"])
REJECTED = Counter("cluster_breaker_rejected", "Calls refused at once by an open circuit breaker", ["breaker"])


class CircuitOpen(Exception):
    """The breaker is open: the call was not made. ``retry_after`` is when to try again (seconds)."""

    def __init__(self, name: str, retry_after: float, reason: str | None) -> None:
        super().__init__(f"circuit breaker {name!r} is open ({reason or 'failing'}); retry in {retry_after:.1f} s")
        self.name = name
        self.retry_after = retry_after
        self.reason = reason


class CircuitBreaker:
    """One breaker: ``allow()``/``done()`` for callers that time calls themselves, ``call()``, or a decorator."""

    def __init__(self, name: str, policy: BreakerPolicy | None = None, ignore: tuple[type[BaseException], ...] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self.ignore = ignore
        self.clock = clock
        self.state = BreakerState()
        # No metric is touched before the first transition or refusal: a breaker made at import
        # (the cache's) must not open a metrics file before the process has chosen its directory.

    @property
    def is_open(self) -> bool:
        """Open and still waiting (a half-open breaker lets its trial calls through)."""
        return self.state.name == "open" and self.clock() < self.state.open_until

    @property
    def failing(self) -> bool:
        """The last outcome recorded while closed was a failure."""
        return self.state.streak > 0

    def allow(self) -> bool:
        """True when a call may start now; a refused call is counted."""
        state, allowed = admit(self.state, self.policy, self.clock())
        self._move(state)
        if not allowed:
            REJECTED.labels(self.name).inc()
        return allowed

    def done(self, failed: bool, duration: float) -> None:
        """Report the outcome of a call ``allow()`` let through."""
        self._move(record(self.state, self.policy, Outcome(failed, duration), self.clock()))

    def forgo(self) -> None:
        """A call ``allow()`` let through did not reach the callee: no outcome to record."""
        self._move(forgo(self.state))

    def refusal(self) -> CircuitOpen:
        return CircuitOpen(self.name, max(0.0, self.state.open_until - self.clock()), self.state.reason)

    def _move(self, state: BreakerState) -> None:
        before = self.state.name
        self.state = state
        if state.name != before:
            STATE.labels(self.name).set(STATE_VALUES[state.name])
            TRANSITIONS.labels(self.name, state.name).inc()
            level = logging.WARNING if state.name == "open" else logging.INFO
            log.log(level, "circuit breaker %s: %s -> %s (%s)", self.name, before, state.name, state.reason,
                    extra={"breaker": self.name, "from_state": before, "to_state": state.name,
                           "reason": state.reason, "openings": state.openings})

    def call(self) -> GuardedCall:
        """An async context manager around one call (a new one per call, so concurrent tasks do not mix)."""
        return GuardedCall(self)

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(func)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            if not self.allow():
                raise self.refusal()
            started = self.clock()
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                self.done(not isinstance(exc, self.ignore), self.clock() - started)
                raise
            self.done(False, self.clock() - started)
            return result

        return guarded

    def status(self) -> dict[str, Any]:
        now = self.clock()
        calls, failures, slow = window_counts(self.state, self.policy, now)
        state = self.state
        return {
            "name": self.name,
            "state": state.name,
            "reason": state.reason,
            "retry_in": round(max(0.0, state.open_until - now), 3) if state.name == "open" else None,
            "openings": state.openings,
            "window": {"calls": calls, "failures": failures, "slow": slow},
            "policy": {"failure_rate": self.policy.failure_rate, "slow_rate": self.policy.slow_rate,
                       "slow_call_seconds": self.policy.slow_call_seconds, "window": self.policy.window,
                       "minimum_calls": self.policy.minimum_calls, "open_wait": self.policy.open_wait,
                       "half_open_calls": self.policy.half_open_calls},
        }


class GuardedCall:
    """One call through a breaker: refused on entry while open, its outcome recorded on exit."""

    __slots__ = ("_breaker", "_started")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._started = 0.0

    async def __aenter__(self) -> CircuitBreaker:
        breaker = self._breaker
        if not breaker.allow():
            raise breaker.refusal()
        self._started = breaker.clock()
        return breaker

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        breaker = self._breaker
        breaker.done(exc is not None and not isinstance(exc, breaker.ignore), breaker.clock() - self._started)


_registry: dict[str, CircuitBreaker] = {}


def breaker(name: str, policy: BreakerPolicy | None = None, ignore: tuple[type[BaseException], ...] = ()) -> CircuitBreaker:
    """The process's breaker called ``name``, made on first use (later policies are ignored)."""
    found = _registry.get(name)
    if found is None:
        found = _registry[name] = CircuitBreaker(name, policy, ignore)
    return found


def register(found: CircuitBreaker) -> CircuitBreaker:
    """List a breaker made elsewhere under its name (replacing an older one of that name)."""
    _registry[found.name] = found
    return found


def all_breakers() -> list[CircuitBreaker]:
    return list(_registry.values())
