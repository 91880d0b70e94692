"""systemd's notify protocol (Type=notify): READY=1, STATUS=..., STOPPING=1, RELOADING=1."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("cluster.supervisor.sd_notify")


def notify(message: str) -> bool:
    """Send one message to $NOTIFY_SOCKET; False when not run by systemd or on error."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify %r failed: %s", message, exc)
        return False
    return True
