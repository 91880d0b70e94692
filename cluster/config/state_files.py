"""The files and sockets the processes share through the state dir: each one's name, mode, writer and readers.

This is the only place a state-dir name is spelled; every process may import it (it
sits in the bottom layers and loads neither gunicorn nor the app). ``ENTRIES`` is the
table ``docs/architecture.md`` ("The state dir") shows, checked by
``tests/unit/test_state_files.py``. The files we write go through ``cluster.safe_files``
(a fresh O_EXCL|O_NOFOLLOW file renamed over the name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cluster.safe_files import write_file


@dataclass(frozen=True)
class StateFile:
    """One file or socket in the state dir."""

    name: str  #: relative to the state dir
    mode: str  #: its permissions, or who creates it when we do not choose them
    writer: str  #: the process that creates or writes it
    readers: str  #: the processes that read it (or connect to it)
    what: str

    def path(self, state_dir: str | os.PathLike[str]) -> Path:
        return Path(state_dir) / self.name


CONTROL_SOCKET = StateFile("control.sock", "0600 (unix stream socket)", "supervisor (binds)",
                           "CLI, HTTP workers, dashboard", "the supervisor's control API")
SETTINGS = StateFile("settings.json", "0600", "supervisor",
                     "HTTP arbiter (argv), CLI, supervisor at take-over",
                     "the effective settings of the running tree")
WORKER_TARGET = StateFile("http.target", "0600", "supervisor", "HTTP arbiter",
                          "the worker count the supervisor asks for")
WORKER_EXITS = StateFile("worker-exits.sock", "unix datagram socket", "supervisor (binds)",
                         "HTTP arbiter (sends)", "why each HTTP worker left")
BOOT_ERROR = StateFile("http.boot-error", "0600", "HTTP worker", "supervisor (first boot)",
                       "why the HTTP tier died before it was ready")
DB_HEALTH = StateFile("db-health.json", "0600", "supervisor", "replica routers in every child",
                      "the shared view of replica health")
REDIS_PID = StateFile("redis.pid", "redis-server's", "embedded redis-server", "supervisor (leftovers)",
                      "the pid of the embedded Redis")
REDIS_LOG = StateFile("redis.log", "redis-server's", "embedded redis-server", "supervisor (relay)",
                      "the embedded Redis's own log")
REDIS_LOG_PREVIOUS = StateFile("redis.log.1", "redis-server's", "supervisor (rename at start)", "operator",
                               "the previous run's Redis log")
ALERTS_SECRET = StateFile("alerts.secret", "0600", "supervisor (monitor)", "supervisor (monitor)",
                          "the HMAC key of alert ack links")

ENTRIES: tuple[StateFile, ...] = (CONTROL_SOCKET, SETTINGS, WORKER_TARGET, WORKER_EXITS, BOOT_ERROR,
                                  DB_HEALTH, REDIS_PID, REDIS_LOG, REDIS_LOG_PREVIOUS, ALERTS_SECRET)


def read_target(path: Path) -> int | None:
    """The worker count the supervisor asks for, or None when unset or unreadable."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return value if value >= 1 else None


def write_target(state_dir: str | os.PathLike[str], count: int) -> None:
    """Ask the arbiter for ``count`` workers (atomic replace; read within a second)."""
    write_file(WORKER_TARGET.path(state_dir), f"{count}\n", mode=0o600)


def markdown_table() -> str:
    """The table of ``docs/architecture.md`` ("The state dir")."""
    rows = ["| File | Mode | Written by | Read by | What |", "|---|---|---|---|---|"]
    rows += [f"| `{e.name}` | {e.mode} | {e.writer} | {e.readers} | {e.what} |" for e in ENTRIES]
    return "\n".join(rows) + "\n"
