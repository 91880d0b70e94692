"""How one health check changes what the router knows of a host: a pure function, and the round's pacing.

``transition`` gets the host's record, one probe result, the primary's
position (its latest LSN and the recent samples of it), the time and the lag
limits, and returns the next record with what is worth logging. No pool, no
clock, no Router: the health rounds (``db.router.Router.apply_round``) feed it
and apply what it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from cluster.db.freshness import is_fresh, lag_bytes, lag_seconds, time_behind
from cluster.db.health_state import HostHealth
from cluster.db.probe import ProbeResult
from cluster.db.selection import ObservedRole

DOWN_RETRY = 1.0


@dataclass(frozen=True)
class LagLimits:
    max_seconds: float
    max_bytes: int


@dataclass(frozen=True)
class HostRecord:
    """What the checks (and requests) have established about one host."""

    role: ObservedRole
    health: HostHealth
    fresh: bool
    lsn: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    last_error: str | None = None
    checked_at: float | None = None


@dataclass(frozen=True)
class Transition:
    record: HostRecord
    check_pool: bool
    """The host answers after being down: drop the connections that died with it before it serves again."""
    warnings: tuple[str, ...] = ()


def transition(name: str, record: HostRecord, probe: ProbeResult, primary_lsn: int | None,
               primary_samples: Sequence[tuple[float, int]], now: float, limits: LagLimits,
               first: bool = False) -> Transition:
    """The record after ``probe`` (taken at ``now``); ``first`` is the check made at start."""
    health = replace(record.health)
    if not probe.ok:
        warnings = ()
        if first:
            health.first_check(False)
        elif health.check_failed():
            warnings = (f"database host {name} down after failed checks: {probe.error}",)
        return Transition(replace(record, health=health, last_error=probe.error, checked_at=now), False, warnings)
    notes = []
    role: ObservedRole = "replica" if probe.in_recovery else "primary"
    if role != record.role:
        notes.append(f"database host {name} now reports itself {role} (was {record.role})")
    if role == "replica":
        behind = lag_bytes(primary_lsn, probe.lsn)
        behind_for = None if probe.lsn is None else time_behind(primary_samples, probe.lsn, now)
        seconds = lag_seconds(behind, behind_for, probe.replay_age)
        fresh = is_fresh(seconds, behind, limits.max_seconds, limits.max_bytes)
        if fresh != record.fresh and not first:
            notes.append(f"replica {name} is {'fresh again' if fresh else 'stale'} (lag {behind} bytes, {seconds} s)")
    else:
        behind, seconds, fresh = None, None, False
    if first:
        health.first_check(True)
    elif health.check_passed():
        notes.append(f"database host {name} is back up")
    after = replace(record, role=role, health=health, fresh=fresh, lsn=probe.lsn, lag_bytes=behind,
                    lag_seconds=seconds, checked_at=now)
    return Transition(after, not record.health.up, tuple(notes))


def primary_position(results: Sequence[ProbeResult]) -> tuple[int, int] | None:
    """(LSN, WAL block size) of the most advanced host that reports itself primary this round."""
    primaries = [r for r in results if r.ok and r.in_recovery is False and r.lsn is not None]
    if not primaries:
        return None
    best = max(primaries, key=lambda r: r.lsn or 0)
    assert best.lsn is not None
    return best.lsn, best.block_size


def next_delay(interval: float, any_down: bool, rand: float) -> float:
    """Seconds to the next round: the interval +-10 % (``rand`` in [0, 1)), at most DOWN_RETRY while a host is down."""
    delay = interval * (0.9 + 0.2 * rand)
    return min(delay, DOWN_RETRY) if any_down else delay
