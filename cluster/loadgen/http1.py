"""A lean HTTP/1.1 keep-alive client for the generator's hot loop: one request at a time per connection.

Why not aiohttp's client: profiled on ``/ping``, aiohttp's request machinery
(ClientRequest/ClientResponse objects, stream readers, timers) costs about
60-75 us of CPU a request, so one generator process tops out near 13,000
req/s, and wrk gets 15,800 from the same one-core server: half of wrk was
only just in reach. This client sends prebuilt request bytes and reads just
what a benchmark needs (the status and where the response ends), which is
several times cheaper. It speaks plain HTTP/1.1: Content-Length, chunked
and close-delimited bodies, 1xx interim responses, HEAD/204/304, keep-alive
and ``Connection: close``, over TCP or TLS.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response we can frame."""


@dataclass(frozen=True)
class Origin:
    host: str
    port: int
    tls: bool


def origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    return Origin(parts.hostname or "", parts.port or (443 if tls else 80), tls)


def build_request(method: str, url: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """The bytes of one request, built once per endpoint and sent as they are."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme == "https" else 80
    host = parts.hostname if parts.port in (None, default_port) else f"{parts.hostname}:{parts.port}"
    if parts.hostname and ":" in parts.hostname:  # IPv6 literal
        host = f"[{parts.hostname}]" + ("" if parts.port in (None, default_port) else f":{parts.port}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    names = {name.lower() for name in headers}
    if "user-agent" not in names:
        lines.append("User-Agent: cluster-bench")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def _header(head: bytes, name: bytes) -> bytes | None:
    """The stripped value of header ``name`` in a lower-cased response head, None when absent."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start:end if end >= 0 else len(head)].strip()


class ResponseParser:
    """Frames responses on one connection (no I/O): ``feed`` bytes, get the status once a response is whole."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.no_body = False
        self.keep_alive = True
        self._status: int | None = None  # set once the head of the current response is read
        self._remaining = 0  # Content-Length bytes still to come
        self._chunked = False
        self._until_close = False
        self._pos = 0  # chunked: where the next chunk-size line starts

    def start(self, no_body: bool) -> None:
        """A request was sent; ``no_body`` for HEAD, whose response has no body whatever its headers say."""
        self.no_body = no_body

    def feed(self, data: bytes) -> int | None:
        """The status of the response this completes, else None (more bytes needed)."""
        self.buffer += data
        while self._status is None:
            if not self._read_head():
                return None
        if self._until_close:
            return None
        if self._chunked:
            return self._read_chunks()
        if len(self.buffer) < self._remaining:
            return None
        del self.buffer[:self._remaining]
        return self._finish()

    def eof(self) -> int | None:
        """The connection closed: the status of a close-delimited response it completes, else None."""
        if self._status is not None and self._until_close:
            self.buffer.clear()
            return self._finish()
        return None

    def _read_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise ProtocolError("response head larger than 64 KiB")
            return False
        head = bytes(self.buffer[:end]).lower()
        del self.buffer[:end + 4]
        if not head.startswith(b"http/1.") or len(head) < 12:
            raise ProtocolError(f"not an HTTP/1.x status line: {head[:40]!r}")
        try:
            status = int(head[9:12])
        except ValueError:
            raise ProtocolError(f"bad status in {head[:40]!r}") from None
        if 100 <= status < 200:
            return True  # interim response (100 Continue): the real one follows
        connection = _header(head, b"connection")
        self.keep_alive = connection != b"close" and (head.startswith(b"http/1.1") or connection == b"keep-alive")
        self._chunked = self._until_close = False
        self._remaining = 0
        length = _header(head, b"content-length")
        if self.no_body or status in (204, 304):
            pass
        elif b"chunked" in (_header(head, b"transfer-encoding") or b""):
            self._chunked = True
            self._pos = 0
        elif length is not None:
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length {length!r}")
            self._remaining = int(length)
        else:
            self._until_close = True
            self.keep_alive = False
        self._status = status
        return True

    def _read_chunks(self) -> int | None:
        buffer = self.buffer
        while True:
            line_end = buffer.find(b"\r\n", self._pos)
            if line_end < 0:
                return None
            try:
                size = int(bytes(buffer[self._pos:line_end]).split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError("bad chunk size") from None
            if size == 0:
                if buffer[line_end + 2:line_end + 4] == b"\r\n":
                    end = line_end + 4
                else:  # trailer fields, then an empty line
                    trailer_end = buffer.find(b"\r\n\r\n", line_end + 2)
                    if trailer_end < 0:
                        return None
                    end = trailer_end + 4
                del buffer[:end]
                return self._finish()
            chunk_end = line_end + 2 + size + 2
            if len(buffer) < chunk_end:
                return None
            self._pos = chunk_end

    def _finish(self) -> int:
        status = self._status
        assert status is not None
        self._status = None
        self._chunked = self._until_close = False
        self._remaining = 0
        self._pos = 0
        return status


class Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends prebuilt bytes and returns the status."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    @classmethod
    async def open(cls, origin: Origin, timeout: float, tls: ssl.SSLContext | None) -> "Connection":
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: cls(loop), origin.host, origin.port,
                                   ssl=tls if origin.tls else None), timeout)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            status = self.parser.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        if status is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost finishes the response if it was close-delimited

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            status = self.parser.eof()
            if status is not None:
                self.waiter.set_result(status)
            else:
                self.waiter.set_exception(ConnectionResetError("connection closed before the response ended"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def _timed_out(self) -> None:
        self._fail(TimeoutError("no complete response in time"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def request(self, payload: bytes, no_body: bool, timeout: float) -> int:
        """Send one request and return the response's status; TimeoutError or OSError on failure."""
        assert self.transport is not None
        self.waiter = waiter = self.loop.create_future()
        self.parser.start(no_body)
        timer = self.loop.call_later(timeout, self._timed_out)
        self.transport.write(payload)
        try:
            status = await waiter
        finally:
            timer.cancel()
            self.waiter = None
        if not self.parser.keep_alive:
            self.close()
        return status


class Client:
    """One user's connections, one per origin, reopened when the server or a failure closed them."""

    def __init__(self, timeout: float, tls: ssl.SSLContext | None) -> None:
        self.timeout = timeout
        self.tls = tls
        self.connections: dict[Origin, Connection] = {}

    async def request(self, origin: Origin, payload: bytes, no_body: bool) -> int:
        connection = self.connections.get(origin)
        if connection is None or connection.closed:
            connection = self.connections[origin] = await Connection.open(origin, self.timeout, self.tls)
        try:
            return await connection.request(payload, no_body, self.timeout)
        except BaseException:
            connection.close()  # its state is unknown after a failure
            raise

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
