"""Who holds a TCP port, so that "cannot bind" can name the other process (as ``ss -ltnp`` would)."""

from __future__ import annotations

import psutil


def port_holder(port: int) -> str | None:
    """``name (pid N)`` of a process listening on ``port``, or None when none is found or it is not ours to
    see (another user's sockets show no pid to a non-root caller)."""
    try:
        listeners = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in listeners:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.Error:
                name = "a process"
            return f"{name} (pid {conn.pid})"
    return None
