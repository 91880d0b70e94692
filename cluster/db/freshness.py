"""Is a replica fresh enough to serve reads? Lag in WAL bytes against the current primary, and in time.

Timestamp lag alone lies: when the primary is idle, ``now() - pg_last_xact_replay_timestamp()``
grows on a replica that is fully caught up. Receive LSN = replay LSN alone lies too: a replica
following a dead primary has replayed all it received. So the byte lag is measured against the
current primary's WAL position, and a replica that has replayed everything the primary has has
no time lag either. Fresh means within ``max_lag_seconds`` OR within ``max_lag_bytes``, as
GitLab's load balancer decides.
"""

from __future__ import annotations

from collections.abc import Sequence


def parse_lsn(text: str) -> int:
    """PostgreSQL's ``X/Y`` LSN as an integer byte position."""
    high, sep, low = text.partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(position: int) -> str:
    """The integer byte position back in PostgreSQL's ``X/Y`` form."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def wal_end(insert_lsn: int, block_size: int = 8192) -> int:
    """Where written WAL ends, from ``pg_current_wal_insert_lsn()``.

    At a page boundary the insert position points past the next page's header (24 bytes, or
    40 at a segment start), which no replica ever replays to; no record ends there (a record
    has a 24-byte header itself), so such a position means the page start.
    """
    offset = insert_lsn % block_size
    return insert_lsn - offset if offset in (24, 40) else insert_lsn


def lag_bytes(primary_lsn: int | None, replay_lsn: int | None) -> int | None:
    """How far behind the primary a replica has replayed; None when either side is unknown."""
    if primary_lsn is None or replay_lsn is None:
        return None
    return max(0, primary_lsn - replay_lsn)


def time_behind(samples: Sequence[tuple[float, int]], replay_lsn: int, now: float) -> float | None:
    """Seconds since the primary first wrote past ``replay_lsn``, from its (time, LSN) samples, oldest first.

    This is the lag as pg_stat_replication's replay_lag means it, measured from the outside:
    it does not grow on a caught-up replica of an idle primary, nor need a replayed commit.
    None without samples; a lower bound when the replica is behind even the oldest sample.
    """
    if not samples:
        return None
    for at, lsn in samples:
        if lsn > replay_lsn:
            return max(0.0, now - at)
    return 0.0


def lag_seconds(behind_bytes: int | None, behind_for: float | None, replay_age: float | None) -> float | None:
    """Time lag: zero when nothing is left to replay; else how long the primary has been ahead,
    or failing that the age of the last replayed commit."""
    if behind_bytes == 0:
        return 0.0
    if behind_for is not None:
        return behind_for
    if replay_age is None:
        return None
    return max(0.0, replay_age)


def is_fresh(seconds: float | None, behind_bytes: int | None, max_seconds: float, max_bytes: int) -> bool:
    """Fresh when within either limit; a lag that cannot be measured is not within any."""
    if behind_bytes is not None and behind_bytes <= max_bytes:
        return True
    return seconds is not None and seconds <= max_seconds
