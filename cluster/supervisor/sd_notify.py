"""systemd's notify protocol (Type=notify), spoken by the supervisor.

``Notifier`` sends READY=1, STATUS=, RELOADING=1 (with MONOTONIC_USEC, which
systemd requires since v253 to match a reload to its READY=1), STOPPING=1,
WATCHDOG=1 and EXTEND_TIMEOUT_USEC= to ``$NOTIFY_SOCKET``. Without that
variable (not run by systemd) every method is a no-op returning False.

The pure parts (the status line, the watchdog interval) are functions, so
their tests need no socket.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("cluster.supervisor.sd_notify")


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises.

    None when no watchdog is asked for, or it is meant for another process
    (WATCHDOG_PID set to a pid that is not ours).
    """
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    return int(usec) / 2_000_000


def status_line(http: tuple[int, int], queue: tuple[int, int] | None, health: float | None,
                alerts: int | None) -> str:
    """The one-line STATUS= shown by `systemctl status`: '8/8 http, 10/10 queue, health 97, 2 alerts'."""
    parts = [f"{http[0]}/{http[1]} http"]
    if queue is not None:
        parts.append(f"{queue[0]}/{queue[1]} queue")
    if health is not None:
        parts.append(f"health {health:.0f}")
    if alerts is not None:
        parts.append(f"{alerts} alert" + ("" if alerts == 1 else "s"))
    return ", ".join(parts)


class Notifier:
    """One process's connection to systemd's notify socket."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self.last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send one datagram of NAME=value lines; False when not run by systemd or on error."""
        if self.address is None:
            return False
        message = "\n".join(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as exc:
            log.warning("sd_notify %r failed: %s", message, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status is not None:
            self.last_status = status
            fields.append(f"STATUS={status}")
        return self.send(*fields)

    def status(self, text: str) -> bool:
        """STATUS=text, sent only when it changed."""
        if text == self.last_status:
            return False
        self.last_status = text
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask systemd for ``seconds`` more before its start (or stop) timeout fires."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")
