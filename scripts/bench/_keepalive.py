"""Keep-alive clients for reload benchmarks and tests: threads that each reuse one HTTP connection.

A response with ``Connection: close`` is a normal end of a connection (the
client opens a new one for its next request). A reset, a connection closed
with no response, or a 5xx is a failure. Each failure records whether its
request went on a connection that had already carried a response (``reused``):
only a server that closes a keep-alive connection without saying so first can
fail such a request; a fresh connection can also fail when no listener is left
(a stop).
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field


@dataclass
class Failure:
    path: str
    error: str
    reused: bool


@dataclass
class LoadCounts:
    ok: int = 0
    closes: int = 0
    """Responses that said ``Connection: close`` (the client reconnected)."""
    refused: int = 0
    """Connections refused: no request was sent."""
    failures: list[Failure] = field(default_factory=list)


class KeepAliveLoad:
    """``clients`` threads requesting ``paths`` (in turn) on reused connections until stopped or ``limit`` each."""

    def __init__(self, host: str, port: int, paths: list[str], clients: int = 16, limit: int = 1_000_000,
                 timeout: float = 60.0) -> None:
        self.host, self.port, self.paths, self.limit, self.timeout = host, port, paths, limit, timeout
        self.counts = LoadCounts()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        answered = 0  # responses on the current connection
        for n in range(self.limit):
            if self._stop.is_set():
                break
            path = self.paths[(index + n) % len(self.paths)]
            if conn is None:
                conn, answered = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout), 0
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
            except ConnectionRefusedError:
                with self._lock:
                    self.counts.refused += 1
                conn.close()
                conn = None
                continue
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.counts.failures.append(Failure(path, f"{type(exc).__name__}: {exc}", answered > 0))
                conn.close()
                conn = None
                continue
            answered += 1
            with self._lock:
                if response.status >= 500:
                    self.counts.failures.append(Failure(path, f"HTTP {response.status}", answered > 1))
                else:
                    self.counts.ok += 1
                if response.will_close:
                    self.counts.closes += 1
            if response.will_close:  # http.client has closed it: the next request reconnects
                conn, answered = None, 0
        if conn is not None:
            conn.close()

    def snapshot(self) -> LoadCounts:
        with self._lock:
            c = self.counts
            return LoadCounts(c.ok, c.closes, c.refused, list(c.failures))

    def start(self) -> "KeepAliveLoad":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadCounts:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 30)
        return self.snapshot()

    def __enter__(self) -> "KeepAliveLoad":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
