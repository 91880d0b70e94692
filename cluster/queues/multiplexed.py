"""A redis-py asyncio client whose short commands, from every task of the process, share one connection.

redis-py's asyncio client checks a connection out of its pool for each command, runs it under its retry
wrapper and instrumentation, and checks it back in: on our hosts 70-120 µs of client CPU a command, more
than the round trip. ``MultiplexedRedis`` is that client (the same API and the same Python replies) except
for transport: a command is queued with a future, all that are queued in one turn of the event loop go out
in one write, and the replies are handed out in order as they arrive. 32 tasks that each run INCRs cost the
client 9-14 µs of CPU a command this way (16-20 µs when the replies went through redis-py's parser).

The shared connection is our own socket (TCP or Unix; through Sentinel, to the master it names), opened with
the address, credentials, database, client name and RESP version of the client's pool, spoken with
``queues.resp`` (hiredis's parser). A reply becomes what redis-py would return through the client's public
``response_callbacks``: nothing here reads redis-py's internals, which change between its releases. The
RESP version is the one redis-py's own connections negotiate (``CLIENT INFO``), since its callbacks are
built for it.

What cannot share a connection takes redis-py's own path on a pooled one: commands that block it
(``BLPOP``, ``XREADGROUP ... BLOCK``, ``WAIT``) or change its state (``SELECT``, ``WATCH``, ``MULTI``,
``CLIENT``, ``SUBSCRIBE``), pipelines and pub/sub (which never come here), calls from another event loop,
and every command of a client whose connections we cannot open as redis-py does (TLS, a credential
provider, a server without ``CLIENT INFO``). When the shared connection fails, every command on it is sent
again on a fresh one, and if that fails too, through redis-py's path, which reconnects and retries with
backoff: for a command that had reached Redis, the same at-least-once as redis-py's own retry after a
lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError, ResponseError

from cluster.queues.connection import UNAVAILABLE_ERRORS
from cluster.queues.resp import NOT_ENOUGH_DATA, encode_command, new_reader

OWN_CONNECTION = frozenset({
    # block the connection until something happens
    "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF", "DEBUG",
    # change the connection's state, or leave it
    "SELECT", "AUTH", "HELLO", "RESET", "CLIENT", "READONLY", "READWRITE", "QUIT", "HIMPORT",
    "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
    "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",
    "SYNC", "PSYNC", "SHUTDOWN",
    # redis-py decodes its reply in a way of its own, which differs between releases
    "INFO",
})
"""Commands sent on a connection of their own (first word of the command, upper case)."""
BLOCKING_WITH_OPTION = frozenset({"XREAD", "XREADGROUP"})
"""Commands that block only when given ``BLOCK``."""


def shares_connection(args: tuple[Any, ...]) -> bool:
    """Whether a command (redis-py's arguments, whose first may hold two words: "CLIENT SETNAME") may go
    on the shared connection."""
    command = args[0].decode() if isinstance(args[0], bytes) else args[0]
    word = command.split(" ", 1)[0].upper()
    if word in BLOCKING_WITH_OPTION:
        return not any(isinstance(arg, str) and arg.upper() == "BLOCK" for arg in args[1:])
    return word not in OWN_CONNECTION


Dial = Callable[[Callable[[], asyncio.Protocol]], Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]]]


@dataclass(frozen=True, slots=True)
class LaneSettings:
    """How to open the shared connection and speak on it, taken from the client's pool."""

    dial: Dial
    connect_timeout: float | None
    handshake: tuple[tuple[Any, ...], ...]
    """Commands sent first, each of which must succeed (HELLO or AUTH, CLIENT SETNAME, SELECT)."""
    encoding: str
    encoding_errors: str
    decode_responses: bool
    lost_by: tuple[type[Exception], ...] = (RedisConnectionError,)
    """Error replies that end the connection, as redis-py's connections end theirs."""


def handshake(protocol: int, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], ...]:
    """The commands that give a new connection what redis-py's connections of the pool have."""
    username, password, name = kwargs.get("username"), kwargs.get("password"), kwargs.get("client_name")
    commands: list[tuple[Any, ...]] = []
    if protocol == 3:
        hello: tuple[Any, ...] = ("HELLO", 3)
        if password:
            hello += ("AUTH", username or "default", password)
        commands.append(hello + (("SETNAME", name) if name else ()))
    else:
        if password:
            commands.append(("AUTH", username, password) if username else ("AUTH", password))
        if name:
            commands.append(("CLIENT", "SETNAME", name))
    if int(kwargs.get("db") or 0):
        commands.append(("SELECT", int(kwargs["db"])))
    return tuple(commands)


async def lane_settings(client: redis.asyncio.Redis) -> LaneSettings | None:
    """The shared connection's settings for this client; None when it must keep to redis-py's path."""
    pool, kwargs = client.connection_pool, client.get_connection_kwargs()
    if issubclass(pool.connection_class, redis.asyncio.SSLConnection) or kwargs.get("credential_provider"):
        return None
    try:
        protocol = int((await client.client_info())["resp"])
    except ResponseError:  # a server older than 6.2: it may not even speak RESP3, which redis-py can fall back from
        return None
    loop = asyncio.get_running_loop()
    dial: Dial
    lost_by: tuple[type[Exception], ...] = (RedisConnectionError,)
    if isinstance(pool, SentinelConnectionPool):
        lost_by += (ReadOnlyError,)  # a master demoted since we asked the sentinels: ask them again
        async def dial(factory: Callable[[], asyncio.Protocol]) -> Any:
            host, port = await pool.get_master_address()
            return await loop.create_connection(factory, host, port)
    elif issubclass(pool.connection_class, redis.asyncio.UnixDomainSocketConnection):
        def dial(factory: Callable[[], asyncio.Protocol]) -> Any:
            return loop.create_unix_connection(factory, kwargs["path"])
    else:
        def dial(factory: Callable[[], asyncio.Protocol]) -> Any:
            return loop.create_connection(factory, kwargs.get("host", "localhost"), int(kwargs.get("port", 6379)))
    return LaneSettings(dial, kwargs.get("socket_connect_timeout"), handshake(protocol, kwargs),
                        kwargs.get("encoding", "utf-8"), kwargs.get("encoding_errors", "strict"),
                        bool(kwargs.get("decode_responses", False)), lost_by)


class _Lane(asyncio.Protocol):
    """One connection of our own, the commands queued for its next write and those awaiting their reply."""

    def __init__(self, settings: LaneSettings) -> None:
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.reader = new_reader(settings.encoding if settings.decode_responses else None, settings.encoding_errors)
        self.transport: asyncio.Transport | None = None
        self.ready = False
        self.outbox: list[bytes] = []
        self.queued: list[tuple[asyncio.Future[Any], bool]] = []
        self.in_flight: deque[tuple[asyncio.Future[Any], bool]] = deque()
        self.flush_due = False
        self.failed: BaseException | None = None
        self.opening = self.loop.create_task(self._open(), name="redis-lane-open")

    def call(self, args: tuple[Any, ...], raw: bool) -> asyncio.Future[Any]:
        """The future of one command's reply (a Redis error as a value; a lost connection as its error).
        ``raw``: bulk strings as bytes whatever the client decodes (redis-py's NEVER_DECODE)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.failed is not None:
            future.set_exception(RedisConnectionError(f"shared Redis connection failed: {self.failed!r}"))
            return future
        try:
            packed = encode_command(args, self.settings.encoding, self.settings.encoding_errors)
        except Exception as exc:  # an argument that cannot be encoded: its caller's error alone
            future.set_exception(exc)
            return future
        self.outbox.append(packed)
        self.queued.append((future, raw))
        if self.ready and not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Send everything queued since the last write, in one write."""
        self.flush_due = False
        if self.failed is not None or not self.outbox:
            return
        data, self.outbox = b"".join(self.outbox), []
        self.in_flight.extend(self.queued)
        self.queued = []
        assert self.transport is not None
        self.transport.write(data)

    async def _open(self) -> None:
        try:
            await asyncio.wait_for(self.settings.dial(lambda: self), self.settings.connect_timeout)
            assert self.transport is not None
            answers = []
            for command in self.settings.handshake:
                future: asyncio.Future[Any] = self.loop.create_future()
                self.in_flight.append((future, False))
                answers.append(future)
            self.transport.write(b"".join(encode_command(command) for command in self.settings.handshake))
            for answer in answers:
                reply = await answer
                if isinstance(reply, Exception):  # wrong password, no such database: the client's path says so
                    raise reply
            self.ready = True
            self._flush()
        except BaseException as exc:  # the lane ends with its first error, told to every caller
            self._fail(exc)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        in_flight = self.in_flight
        while in_flight:
            future, raw = in_flight[0]
            reply = self.reader.gets(False) if raw else self.reader.gets()
            if reply is NOT_ENOUGH_DATA:
                return
            in_flight.popleft()
            if isinstance(reply, self.settings.lost_by):  # LOADING, too many clients: redis-py drops the connection
                self._fail(reply)
                return
            if not future.done():  # a cancelled caller's reply is read and dropped
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or RedisConnectionError("Connection closed by server."))

    def _fail(self, exc: BaseException) -> None:
        """Fail every command not yet answered, once, and close the connection."""
        if self.failed is not None:
            return
        self.failed = exc
        if self.opening is not asyncio.current_task():
            self.opening.cancel()
        error = RedisConnectionError(f"shared Redis connection failed: {exc!r}")
        for future, _ in (*self.in_flight, *self.queued):
            if not future.done():
                future.set_exception(error)
        self.in_flight.clear()
        self.queued.clear()
        self.outbox.clear()
        if self.transport is not None:
            self.transport.abort()

    async def close(self) -> None:
        self._fail(asyncio.CancelledError("closed"))
        with contextlib.suppress(BaseException):
            await self.opening


class MultiplexedRedis(redis.asyncio.Redis):
    """``redis.asyncio.Redis`` on an existing connection pool; see the module's docstring."""

    _lane: _Lane | None = None
    _settings: asyncio.Task[LaneSettings | None] | None = None
    """Asked once per client (by the first command of the first loop); None: keep to redis-py's path."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if shares_connection(args):
            for _ in range(2):  # a fresh shared connection once after a lost one, then redis-py's path
                lane = self._lane
                if lane is None or lane.failed is not None or lane.loop is not asyncio.get_running_loop():
                    lane = await self._new_lane()
                    if lane is None:
                        break
                try:
                    reply = await lane.call(args, NEVER_DECODE in options)
                except UNAVAILABLE_ERRORS:
                    continue
                return await self._parsed(args[0], reply, options)
        return await super().execute_command(*args, **options)

    async def _parsed(self, command: str, reply: Any, options: dict[str, Any]) -> Any:
        """The reply as redis-py's ``parse_response`` makes it, with the client's public response callbacks."""
        if isinstance(reply, RedisError):
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise reply
        for option in (NEVER_DECODE, EMPTY_RESPONSE, "keys"):
            options.pop(option, None)
        callback = self.response_callbacks.get(command)
        if callback is None:
            return reply
        value = callback(reply, **options)
        return await value if inspect.isawaitable(value) else value

    async def _new_lane(self) -> _Lane | None:
        """A shared connection for the running loop, replacing a failed one; None from another loop than the
        first one's, or for a client that keeps to redis-py's path."""
        lane = self._lane
        if lane is not None and lane.loop is not asyncio.get_running_loop():
            return None
        asking = self._settings
        if asking is None:
            asking = self._settings = asyncio.create_task(lane_settings(self), name="redis-lane-settings")
        elif asking.get_loop() is not asyncio.get_running_loop():
            return None
        try:
            settings = await asyncio.shield(asking)
        except Exception:  # Redis away: asked again next time; this call takes redis-py's path, which says why
            if self._settings is asking:
                self._settings = None
            return None
        if settings is None:
            return None
        if self._lane is lane:  # not replaced by another task meanwhile
            self._lane = _Lane(settings)
        return self._lane

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        lane, self._lane = self._lane, None
        if lane is not None:
            await lane.close()
        await super().aclose(close_connection_pool)
