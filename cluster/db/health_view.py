"""The supervisor's health view: one round of probe results per file, read by every router it runs.

Without it each process using the router (every HTTP worker, every queue pool
process) kept its own health connection to every host: one per process per
host, next to its pool. Under `cluster start` the supervisor probes each host
once per round (``cluster.supervisor.db_health``) and replaces
``<state_dir>/db-health.json``; the routers look at it every second at most (a
stat; the file is read again only when it was replaced) and apply each new
round through ``Router.apply_round`` as if they had probed.

The file is read with bounds (size, schema, age): a file too big, malformed,
for other hosts, from the future or older than ``stale_after`` is not used,
and the router probes the hosts itself until a usable round is back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cluster.config import state_files
from cluster.db.probe import ProbeResult

VIEW_FILE = state_files.DB_HEALTH.name
MAX_BYTES = 64 * 1024
MAX_HOSTS = 65  # the primary and database.replicas' 64
STALE_ROUNDS = 3
FUTURE_SLACK = 1.0  # seconds a round may seem to come from the future (clock steps) before it is refused
MAX_LSN = 2**64 - 1


class ViewError(Exception):
    """The view cannot be used; the message says why, in one line."""


class _Probe(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    host: str = Field(min_length=1, max_length=300)
    ok: bool
    in_recovery: bool | None = None
    lsn: int | None = Field(None, ge=0, le=MAX_LSN)
    replay_age: float | None = Field(None, allow_inf_nan=False)
    block_size: int = Field(8192, ge=512, le=65536)
    error: str | None = Field(None, max_length=1000)


class _Round(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: Literal[1]
    publisher: str = Field(min_length=1, max_length=64)
    seq: int = Field(ge=0, le=2**63 - 1)
    at: float = Field(ge=0, allow_inf_nan=False)
    hosts: list[_Probe] = Field(max_length=MAX_HOSTS)


@dataclass(frozen=True)
class SharedRound:
    """One published round: ``key`` tells rounds apart, ``at`` is when the probes were taken."""

    key: tuple[str, int]
    at: float
    results: dict[str, ProbeResult]


def stale_after(interval: float, timeout: float) -> float:
    """Seconds after which a round is too old to follow: three intervals, plus one probe's timeout."""
    return STALE_ROUNDS * interval + timeout


def encode_round(publisher: str, seq: int, at: float, results: Sequence[tuple[str, ProbeResult]]) -> str:
    """The file's text for one round of ``(host name, result)``."""
    hosts = [_Probe(host=name, ok=r.ok, in_recovery=r.in_recovery, lsn=r.lsn, replay_age=r.replay_age,
                    block_size=r.block_size, error=None if r.error is None else r.error[:1000])
             for name, r in results]
    return _Round(version=1, publisher=publisher, seq=seq, at=at, hosts=hosts).model_dump_json()


def parse_round(data: bytes) -> SharedRound:
    """Validate a file's bytes into a round; ``ViewError`` for anything out of bounds."""
    if len(data) > MAX_BYTES:
        raise ViewError(f"the view is larger than {MAX_BYTES} bytes")
    try:
        parsed = _Round.model_validate_json(data)
    except ValidationError as exc:
        raise ViewError(f"the view is malformed ({exc.error_count()} errors)") from None
    results = {p.host: ProbeResult(p.ok, p.in_recovery, p.lsn, p.replay_age, p.block_size, p.error)
               for p in parsed.hosts}
    if len(results) != len(parsed.hosts):
        raise ViewError("the view names a host twice")
    return SharedRound((parsed.publisher, parsed.seq), parsed.at, results)


def refusal(shared: SharedRound, names: Sequence[str], now: float, max_age: float) -> str | None:
    """Why the round cannot stand for this router's hosts at ``now``, or None when it can."""
    if set(shared.results) != set(names):
        return f"the view covers other hosts ({sorted(shared.results)}, not {sorted(names)})"
    age = now - shared.at
    if age > max_age:
        return f"the view is {age:.1f} s old (stale after {max_age:.1f} s)"
    if age < -FUTURE_SLACK:
        return f"the view is dated {-age:.1f} s in the future"
    return None


def read_bounded(path: Path, limit: int = MAX_BYTES) -> tuple[tuple[int, int, int], bytes]:
    """(identity, bytes) of a regular file at most ``limit`` bytes, opened without following a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ViewError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise ViewError(f"the view is larger than {limit} bytes")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ViewError(f"the view is larger than {limit} bytes")
    return (st.st_ino, st.st_mtime_ns, st.st_size), data


class ViewReader:
    """Reads the view for one router's hosts; re-parses only when the file was replaced."""

    def __init__(self, path: Path, names: Sequence[str], max_age: float) -> None:
        self.path = path
        self.names = list(names)
        self.max_age = max_age
        self._identity: tuple[int, int, int] | None = None
        self._last: SharedRound | None = None

    def current(self, now: float) -> tuple[SharedRound | None, str]:
        """The round to follow now, or None and why not."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
            if (st.st_ino, st.st_mtime_ns, st.st_size) != self._identity or self._last is None:
                self._last = None
                self._identity, data = read_bounded(self.path)
                self._last = parse_round(data)
        except FileNotFoundError:
            return None, f"no view at {self.path}"
        except OSError as exc:
            return None, f"the view cannot be read: {exc.strerror or exc}"
        except ViewError as exc:
            return None, str(exc)
        reason = refusal(self._last, self.names, now, self.max_age)
        return (None, reason) if reason else (self._last, "")
