"""systemd socket activation through the supervisor to gunicorn's arbiter.

systemd hands the listening sockets to the process it starts (the
supervisor) as fds 3.. with ``LISTEN_FDS``/``LISTEN_FDNAMES`` and
``LISTEN_PID`` set to that process's pid. gunicorn adopts them only when
``LISTEN_PID`` equals its own pid, which the supervisor cannot know before it
spawns the arbiter: so the supervisor hands the fds on with ``LISTEN_PID``
left out and a marker, and the arbiter sets ``LISTEN_PID`` to itself
(``adopt``) before gunicorn looks. Every other child gets none of it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping

SD_LISTEN_FDS_START = 3
HANDED_ON = "CLUSTER_LISTEN_FDS_HANDED_ON"
VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", HANDED_ON)


def inherited(env: Mapping[str, str], pid: int) -> tuple[int, ...]:
    """The fds systemd passed to process ``pid`` (empty when none, or they were meant for another)."""
    count, owner = env.get("LISTEN_FDS", ""), env.get("LISTEN_PID", "")
    if not count.isdigit() or owner != str(pid):
        return ()
    return tuple(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


def without(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with no socket-activation variable: for children that must not adopt the fds."""
    return {k: v for k, v in env.items() if k not in VARIABLES}


def hand_on(env: Mapping[str, str], fds: tuple[int, ...]) -> dict[str, str]:
    """The arbiter's environment: the fds announced, LISTEN_PID to be set by the arbiter itself."""
    child = without(env)
    if fds:
        child["LISTEN_FDS"] = str(len(fds))
        child[HANDED_ON] = "1"
        if "LISTEN_FDNAMES" in env:
            child["LISTEN_FDNAMES"] = env["LISTEN_FDNAMES"]
    return child


def adopt(environ: MutableMapping[str, str], pid: int) -> None:
    """In the arbiter, before gunicorn starts: claim the fds the supervisor handed on."""
    if environ.pop(HANDED_ON, None) == "1":
        environ["LISTEN_PID"] = str(pid)


def bind_addresses(fds: tuple[int, ...]) -> list[str]:
    """gunicorn-style bind strings (HOST:PORT, unix:PATH) of already-bound listening sockets."""
    addresses = []
    for fd in fds:
        sock = socket.socket(fileno=os.dup(fd))
        try:
            name = sock.getsockname()
            family = sock.family
        finally:
            sock.close()
        if family == socket.AF_UNIX:
            addresses.append(f"unix:{name}")
        elif family == socket.AF_INET6:
            addresses.append(f"[{name[0]}]:{name[1]}")
        else:
            addresses.append(f"{name[0]}:{name[1]}")
    return addresses
