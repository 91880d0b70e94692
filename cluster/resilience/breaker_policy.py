"""The circuit breaker's state machine, resilience4j style: a pure function of (state, outcome, now).

closed: calls pass; outcomes fill a time window of one-second buckets. Once the window holds
``minimum_calls`` calls, a failure rate or a slow-call rate at or above its threshold opens
the breaker; so do ``consecutive_failures`` failures in a row when set (Envoy's consecutive
errors: a host that stops answering opens at once even after a busy window of successes).
open: calls are refused until ``open_until``; the wait grows with each opening in a row
(Envoy's outlier ejection: base x consecutive openings, capped).
half_open: ``half_open_calls`` trial calls are let through; one failed (or slow) trial opens
the breaker again, all trials good close it and forget the openings.

No clock, no I/O: the wrapper (``resilience.breaker``) passes ``now`` in, so every
transition is unit-tested without sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

StateName = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerPolicy:
    failure_rate: float = 0.5  # a share in (0, 1]
    slow_rate: float = 1.0  # share of calls slower than slow_call_seconds; 1.0 opens only when all are slow
    slow_call_seconds: float = 5.0
    window: float = 10.0  # seconds of outcomes the rates are taken over
    minimum_calls: int = 10
    open_wait: float = 5.0  # first wait in open state
    max_open_wait: float = 300.0
    half_open_calls: int = 3
    consecutive_failures: int = 0  # 0: off


# Guarding a Redis the cache or the rate limits use: skip it for 2 s (growing) once half the
# last 5 s of commands failed; one trial command then decides.
REDIS_POLICY = BreakerPolicy(failure_rate=0.5, minimum_calls=5, window=5, open_wait=2, max_open_wait=30,
                             half_open_calls=1)


@dataclass(frozen=True)
class Bucket:
    second: int
    calls: int = 0
    failures: int = 0
    slow: int = 0


@dataclass(frozen=True)
class BreakerState:
    name: StateName = "closed"
    buckets: tuple[Bucket, ...] = ()
    open_until: float = 0.0
    openings: int = 0  # consecutive openings without a close in between
    trials_started: int = 0
    trials_passed: int = 0
    streak: int = 0  # failures in a row while closed
    reason: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Outcome:
    failed: bool
    duration: float


def open_wait(policy: BreakerPolicy, openings: int) -> float:
    """How long the ``openings``-th opening in a row lasts."""
    return min(policy.open_wait * max(1, openings), policy.max_open_wait)


def window_counts(state: BreakerState, policy: BreakerPolicy, now: float) -> tuple[int, int, int]:
    """(calls, failures, slow calls) inside the window ending at ``now``."""
    oldest = math.floor(now) - math.ceil(policy.window) + 1
    live = [b for b in state.buckets if b.second >= oldest]
    return sum(b.calls for b in live), sum(b.failures for b in live), sum(b.slow for b in live)


def _opened(state: BreakerState, policy: BreakerPolicy, now: float, reason: str) -> BreakerState:
    openings = state.openings + 1
    return BreakerState("open", (), now + open_wait(policy, openings), openings, reason=reason)


def admit(state: BreakerState, policy: BreakerPolicy, now: float) -> tuple[BreakerState, bool]:
    """May a call start now? Returns the new state and the answer (open -> half_open when the wait is over)."""
    if state.name == "closed":
        return state, True
    if state.name == "open":
        if now < state.open_until:
            return state, False
        state = replace(state, name="half_open", trials_started=0, trials_passed=0, reason="wait over")
    if state.trials_started >= policy.half_open_calls:
        return state, False
    return replace(state, trials_started=state.trials_started + 1), True


def forgo(state: BreakerState) -> BreakerState:
    """A call ``admit`` let through ended with no verdict on the callee (it never reached it):
    in half-open, its trial slot is given back."""
    if state.name == "half_open" and state.trials_started > state.trials_passed:
        return replace(state, trials_started=state.trials_started - 1)
    return state


def record(state: BreakerState, policy: BreakerPolicy, outcome: Outcome, now: float) -> BreakerState:
    """The state after a call admitted by ``admit`` ended with ``outcome`` at ``now``."""
    slow = outcome.duration >= policy.slow_call_seconds
    if state.name == "half_open":
        if outcome.failed or slow:
            return _opened(state, policy, now, "a half-open trial call " + ("failed" if outcome.failed else "was slow"))
        passed = state.trials_passed + 1
        if passed >= policy.half_open_calls:
            return BreakerState("closed", reason="half-open trial calls passed")
        return replace(state, trials_passed=passed)
    if state.name == "open":
        return state  # a call admitted before the breaker opened: its outcome is already moot
    second = math.floor(now)
    oldest = second - math.ceil(policy.window) + 1
    buckets = [b for b in state.buckets if b.second >= oldest]
    if buckets and buckets[-1].second == second:
        last = buckets.pop()
    else:
        last = Bucket(second)
    buckets.append(Bucket(second, last.calls + 1, last.failures + int(outcome.failed), last.slow + int(slow)))
    streak = state.streak + 1 if outcome.failed else 0
    state = replace(state, buckets=tuple(buckets), streak=streak)
    if policy.consecutive_failures and streak >= policy.consecutive_failures:
        return _opened(state, policy, now, f"{streak} failures in a row")
    calls, failures, slow_calls = window_counts(state, policy, now)
    if calls >= policy.minimum_calls:
        if failures / calls >= policy.failure_rate:
            return _opened(state, policy, now, f"failure rate {failures}/{calls} over {policy.window:g} s")
        if slow_calls / calls >= policy.slow_rate:
            return _opened(state, policy, now, f"slow-call rate {slow_calls}/{calls} over {policy.window:g} s")
    return state
