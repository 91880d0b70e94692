"""Who holds a TCP port, so that "cannot bind" can name the other process (as ``ss -ltnp`` would)."""

from __future__ import annotations

import psutil


def listeners(port: int) -> frozenset[int | None]:
    """The pids listening on ``port``; None for a socket whose process is not ours to see (another user's
    sockets show no pid to a non-root caller)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return frozenset()
    return frozenset(conn.pid for conn in connections
                     if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port)


def port_holder(port: int) -> str | None:
    """``name (pid N)`` of a process listening on ``port``, or None when none is found or it is not ours to see."""
    pids = sorted(pid for pid in listeners(port) if pid)
    if not pids:
        return None
    try:
        name = psutil.Process(pids[0]).name()
    except psutil.Error:
        name = "a process"
    return f"{name} (pid {pids[0]})"
