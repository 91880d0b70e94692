"""Consumer names that say where a consumer runs, so a peer on the same host can tell it died.

A name is ``<hostname>-<pid namespace>-<pid>``. A consumer whose name carries
our hostname and our pid namespace is a process we can see: if its pid is
gone, it died, and its pending entries can be claimed at once by name
instead of waiting for the lease. Names from other hosts (or other
containers) are never judged: only the lease reclaims those.
"""

from __future__ import annotations

import os
import socket


def _pid_namespace() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "0"
    return link.partition("[")[2].rstrip("]") or "0"


def local_prefix() -> str:
    """The name prefix of every consumer that runs on this host, in this pid namespace."""
    return f"{socket.gethostname()}-{_pid_namespace()}-"


def consumer_name(pid: int | None = None) -> str:
    """The name a consumer with ``pid`` (default: this process) uses in its group."""
    return f"{local_prefix()}{os.getpid() if pid is None else pid}"


def local_pid(name: str, prefix: str) -> int | None:
    """The pid in a name of this host and namespace (``prefix``), or None for anyone else's name."""
    if not name.startswith(prefix):
        return None
    tail = name[len(prefix):]
    return int(tail) if tail.isdigit() else None


def is_dead(pid: int) -> bool:
    """True when no process has this pid, or only its zombie (it exited, its parent has not reaped it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
