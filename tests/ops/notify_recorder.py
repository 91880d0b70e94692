"""Plays systemd's side of NOTIFY_SOCKET: a unix datagram socket recording every message with its time."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifyRecorder:
    """Binds ``path`` and records (monotonic time, fields) for every datagram until closed."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def having(self, key: str, value: str | None = None, after: float = 0.0) -> list[tuple[float, dict[str, str]]]:
        """Messages after ``after`` carrying ``key`` (with ``value`` when given)."""
        with self._lock:
            return [(t, f) for t, f in self.messages
                    if t >= after and key in f and (value is None or f[key] == value)]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self.sock.close()
