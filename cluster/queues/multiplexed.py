"""A redis-py asyncio client whose short commands, from every task of the process, share one connection.

redis-py's asyncio client checks a connection out of its pool for each command, runs it under its retry
wrapper and instrumentation, and checks it back in: on our hosts 70-120 µs of client CPU a command, more
than the round trip. ``MultiplexedRedis`` is that client (the same API and reply parsing) except for
transport: a command is queued with a future, one writer task sends all that are queued in one write,
and one reader task hands the replies out in order. 32 jobs of a consumer that each run an ``INCR``
cost it 18-32 µs apiece this way.

What cannot share a connection takes redis-py's own path on a pooled one: commands that block it
(``BLPOP``, ``XREADGROUP ... BLOCK``, ``WAIT``) or change its state (``SELECT``, ``WATCH``, ``MULTI``,
``CLIENT``, ``SUBSCRIBE``), pipelines and pub/sub (which never come here), and calls from another event
loop. When the shared connection fails, every command on it is sent again on a fresh one, and if that
fails too, through redis-py's path, which reconnects and retries with backoff: for a command that had
reached Redis, the same at-least-once as redis-py's own retry after a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import redis.asyncio
from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from cluster.queues.connection import UNAVAILABLE_ERRORS

OWN_CONNECTION = frozenset({
    # block the connection until something happens
    "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF", "DEBUG",
    # change the connection's state, or leave it
    "SELECT", "AUTH", "HELLO", "RESET", "CLIENT", "READONLY", "READWRITE", "QUIT", "HIMPORT",
    "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
    "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",
    "SYNC", "PSYNC", "SHUTDOWN",
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


class _Answered:
    """What ``parse_response`` reads from: the reply the reader task already took off the connection."""

    __slots__ = ("reply",)

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    async def read_response(self, disable_decoding: bool = False) -> Any:
        if isinstance(self.reply, ResponseError):
            raise self.reply
        return self.reply


class _Lane:
    """One connection taken from the pool, its writer and reader tasks, and the commands in between."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.conn: Any = None
        self.queued: deque[tuple[asyncio.Future[Any], list[bytes], bool]] = deque()
        self.in_flight: deque[tuple[asyncio.Future[Any], bool]] = deque()
        self.has_queued = asyncio.Event()
        self.has_in_flight = asyncio.Event()
        self.failed: BaseException | None = None
        self.tasks = [self.loop.create_task(self._write_loop(), name="redis-lane-write"),
                      self.loop.create_task(self._read_loop(), name="redis-lane-read")]

    def call(self, args: tuple[Any, ...], raw: bool) -> asyncio.Future[Any]:
        """The future of one command's reply (a ResponseError as a value; a lost connection as its error)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.failed is not None:
            future.set_exception(RedisConnectionError(f"shared Redis connection failed: {self.failed!r}"))
            return future
        self.queued.append((future, list(args), raw))
        self.has_queued.set()
        return future

    async def _write_loop(self) -> None:
        try:
            self.conn = await self.pool.get_connection()
            while True:
                await self.has_queued.wait()
                self.has_queued.clear()
                batch, self.queued = self.queued, deque()
                chunks: list[bytes] = []
                for future, args, raw in batch:
                    try:
                        chunks.extend(self.conn.pack_command(*args))
                    except Exception as exc:  # an argument redis-py cannot encode: its caller's error alone
                        if not future.done():
                            future.set_exception(exc)
                        continue
                    self.in_flight.append((future, raw))
                self.has_in_flight.set()
                await self.conn.send_packed_command(chunks, check_health=False)
        except BaseException as exc:  # the lane ends with its first error, told to every caller
            self._fail(exc)

    async def _read_loop(self) -> None:
        try:
            while True:
                if not self.in_flight:
                    self.has_in_flight.clear()
                    await self.has_in_flight.wait()
                    continue
                future, raw = self.in_flight[0]
                try:
                    reply = await self.conn.read_response(disable_decoding=raw)
                except ResponseError as exc:
                    reply = exc
                self.in_flight.popleft()
                if not future.done():  # a cancelled caller's reply is read and dropped
                    future.set_result(reply)
        except BaseException as exc:  # the lane ends with its first error, told to every caller
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Fail every command not yet answered, once; the connection goes back to the pool closed."""
        if self.failed is not None:
            return
        self.failed = exc
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        error = RedisConnectionError(f"shared Redis connection failed: {exc!r}")
        for future, *_ in (*self.in_flight, *self.queued):
            if not future.done():
                future.set_exception(error)
        self.in_flight.clear()
        self.queued.clear()
        if self.conn is not None:
            self.tasks.append(self.loop.create_task(self._give_back(self.conn)))

    async def _give_back(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    async def close(self) -> None:
        self._fail(asyncio.CancelledError("closed"))
        await asyncio.gather(*self.tasks, return_exceptions=True)


class MultiplexedRedis(redis.asyncio.Redis):
    """``redis.asyncio.Redis`` on an existing connection pool; see the module's docstring."""

    _lane: _Lane | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if shares_connection(args):
            for _ in range(2):  # a fresh shared connection once after a lost one, then redis-py's path
                lane = self._lane_here()
                if lane is None:
                    break
                try:
                    reply = await lane.call(args, NEVER_DECODE in options)
                except UNAVAILABLE_ERRORS:
                    continue
                return await self.parse_response(_Answered(reply), args[0], **options)  # type: ignore[arg-type]
        return await super().execute_command(*args, **options)

    def _lane_here(self) -> _Lane | None:
        """The shared connection of the running loop (a new one after a failure); None from another loop."""
        lane = self._lane
        if lane is not None and lane.loop is not asyncio.get_running_loop():
            return None
        if lane is None or lane.failed is not None:
            lane = self._lane = _Lane(self.connection_pool)
        return lane

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        lane, self._lane = self._lane, None
        if lane is not None:
            await lane.close()
        await super().aclose(close_connection_pool)
