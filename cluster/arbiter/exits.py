"""Why a worker left, as the arbiter tells the supervisor: one datagram per exit.

The supervisor binds ``<state_dir>/worker-exits.sock`` (a unix datagram
socket) before it starts the HTTP tier; the arbiter's ``child_exit`` hook
sends ``{"pid": ..., "reason": ...}`` to it without blocking. The reasons:

- ``retired``: the arbiter retired it on a scale-down;
- ``reload``: it ran the configuration before a reload and was replaced;
- ``timeout``: its heartbeat stopped and the arbiter killed it;
- ``shutdown``: the arbiter is stopping;
- ``crashed``: it left without the arbiter asking (gunicorn's ``child_exit``
  hook is not given the wait status). The supervisor marks each worker it
  recycles (``Recycle`` in its command loop) before it signals it, and counts
  that worker's exit as ``recycled`` (``supervisor.worker_exits.as_requested``).
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

from cluster.config import state_files

EXITS_SOCKET = state_files.WORKER_EXITS.name
REASONS = ("retired", "reload", "timeout", "shutdown", "crashed")
FAILURES = frozenset({"timeout", "crashed"})
log = logging.getLogger("cluster.arbiter.exits")


def exit_reason(*, stopping: bool, retiring: bool, stale: bool, timed_out: bool) -> str:
    """Why a worker left, from what the arbiter knows about it."""
    if stopping:
        return "shutdown"
    if retiring:
        return "retired"
    if stale:
        return "reload"
    if timed_out:
        return "timeout"
    return "crashed"


def encode(pid: int, reason: str) -> bytes:
    return json.dumps({"pid": pid, "reason": reason}).encode()


def decode(data: bytes) -> tuple[int, str] | None:
    """(pid, reason) of a datagram, or None when it is not one of ours."""
    try:
        body: Any = json.loads(data)
        pid, reason = body["pid"], body["reason"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(pid, int) or reason not in REASONS:
        return None
    return pid, reason


class ExitReporter:
    """The arbiter's end: sends without ever blocking the arbiter's loop."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def report(self, pid: int, reason: str) -> None:
        try:
            self._sock.sendto(encode(pid, reason), self.path)
        except OSError as exc:
            # The supervisor is gone or its queue is full: the exit is still in our log.
            log.warning("cannot report the exit of worker %s (%s): %s", pid, reason, exc,
                        extra={"worker_pid": pid, "reason": reason})
