"""The router's errors, and which database errors a read may be retried on another host for."""

from __future__ import annotations

from enum import Enum

import psycopg
from psycopg_pool import PoolTimeout


class RouterError(psycopg.OperationalError):
    """Base of the router's own errors (an OperationalError, so existing handlers still catch them)."""


class PrimaryUnavailable(RouterError):
    """A write or transaction could not get the primary: down, unreachable, or two hosts claim it."""


class NoHostAvailable(RouterError):
    """A read was tried on every usable host and none could serve it."""


class ReadTimeout(RouterError):
    """A read ran past ``database.read_timeout`` after it had started returning results (not retried)."""


class RouterClosed(RouterError):
    """The router was used before ``start()`` or after ``close()``."""


class Failure(Enum):
    """What a failed read attempt says about the host it ran on."""

    HOST_DOWN = "host_down"  # the connection broke or could not be made: take the host out at once
    BUSY = "busy"  # no connection free in time: try elsewhere, the host itself may be fine
    RECOVERY_CONFLICT = "recovery_conflict"  # a replica cancelled the query to apply WAL: try elsewhere
    TIMEOUT = "timeout"  # no answer within database.read_timeout: the host may hang; try elsewhere


# SQLSTATEs that mean the server went away: connection exceptions, and the shutdown family.
_GONE_STATES = ("57P01", "57P02", "57P03")


def classify(exc: BaseException, on_replica: bool) -> Failure | None:
    """How a read attempt failed, or None when the error is the caller's (bad SQL, constraint...)."""
    if isinstance(exc, PoolTimeout):
        return Failure.BUSY
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    if on_replica and state == "40001":
        # On a hot standby a serialization failure is a recovery conflict: replicas run no SSI.
        return Failure.RECOVERY_CONFLICT
    if isinstance(exc, psycopg.OperationalError) and (state is None or state.startswith("08") or state in _GONE_STATES):
        return Failure.HOST_DOWN
    return None


def is_read_only_answer(exc: BaseException) -> bool:
    """SQLSTATE 25006: the host we took for the primary is in recovery (demoted, or failed over)."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate == "25006"
