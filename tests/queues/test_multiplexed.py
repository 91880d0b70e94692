"""The jobs' Redis client: short commands of many tasks share one connection, on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import ResponseError

from cluster.queues.connection import async_client
from cluster.queues.multiplexed import MultiplexedRedis, shares_connection
from tests.support import free_port

HANG_GUARD = 30  # s: only a lane that lost a reply (or a blocked connection) gets near it


@contextlib.asynccontextmanager
async def multiplexed(url: str) -> AsyncIterator[MultiplexedRedis]:
    """The jobs' client on a pool of its own, as a consumer makes it."""
    pooled = async_client(url, blocking=False)
    client = MultiplexedRedis(connection_pool=pooled.connection_pool)
    try:
        yield client
    finally:
        await client.aclose()
        await pooled.aclose()


def connections_last_running(url: str, command: str) -> list[dict[str, str]]:
    """redis-server's view of the clients whose last command was ``command`` (lower case)."""
    return [c for c in redis.Redis.from_url(url, decode_responses=True).client_list() if c["cmd"] == command]


def test_which_commands_take_a_connection_of_their_own() -> None:
    assert shares_connection(("INCR", "a")) and shares_connection(("hgetall", "h"))
    assert shares_connection((b"EVALSHA", "sha", 0))
    assert shares_connection(("XREADGROUP", "GROUP", "g", "c", "COUNT", 5, "STREAMS", "s", ">"))
    assert not shares_connection(("XREADGROUP", "GROUP", "g", "c", "BLOCK", 1000, "STREAMS", "s", ">"))
    assert not shares_connection(("BLPOP", "l", 0)) and not shares_connection(("XREAD", "block", 0, "STREAMS", "s", 0))
    assert not shares_connection(("CLIENT SETNAME", "n")) and not shares_connection(("watch", "k"))
    assert not shares_connection((b"SUBSCRIBE", "c")) and not shares_connection(("MULTI",))


def test_concurrent_commands_get_their_own_replies_over_one_connection(redis_url: str) -> None:
    async def main() -> None:
        async with multiplexed(redis_url) as client:

            async def one(i: int) -> tuple[int, str | None, dict[str, str], int]:
                await client.hset(f"h{i}", mapping={"i": str(i), "sq": str(i * i)})
                await client.set(f"k{i}", f"v{i}")
                return i, await client.get(f"k{i}"), await client.hgetall(f"h{i}"), await client.incrby("n", 1)

            results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(300))), HANG_GUARD)
            for i, value, fields, _ in results:
                assert value == f"v{i}"
                assert fields == {"i": str(i), "sq": str(i * i)}
            assert sorted(r[3] for r in results) == list(range(1, 301))  # each INCRBY saw its own reply
            assert len(connections_last_running(redis_url, "incrby")) == 1
            # DUMP's reply is bytes (redis-py's NEVER_DECODE), not text
            assert await client.dump("k1") == redis.Redis.from_url(redis_url).dump("k1")

    asyncio.run(main())


def test_an_error_reply_goes_to_its_caller_only(redis_url: str) -> None:
    async def main() -> None:
        async with multiplexed(redis_url) as client:
            await client.set("text", "abc")
            replies = await asyncio.gather(client.incr("a"), client.hincrby("text", "f", 1), client.incr("a"),
                                           return_exceptions=True)
            assert replies[0] == 1 and replies[2] == 2
            assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])
            # an argument redis-py cannot encode fails its own call, not the connection the others share
            replies = await asyncio.wait_for(asyncio.gather(
                client.incr("a"), client.set("b", {"not": "encodable"}), client.incr("a"), return_exceptions=True),
                HANG_GUARD)
            assert replies[0] == 3 and replies[2] == 4 and isinstance(replies[1], DataError)
            script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            await client.script_flush()
            assert await script(keys=["a"], args=[10]) == 14  # NOSCRIPT reaches the script object, which loads it

    asyncio.run(main())


def test_a_cancelled_caller_leaves_the_others_their_replies(redis_url: str) -> None:
    async def main() -> None:
        async with multiplexed(redis_url) as client:
            await asyncio.gather(*(client.set(f"k{i}", str(i)) for i in range(100)))
            tasks = [asyncio.create_task(client.get(f"k{i}")) for i in range(100)]
            await asyncio.sleep(0)  # queued, not answered
            for task in tasks[::3]:
                task.cancel()
            for i, task in enumerate(tasks):
                if i % 3:
                    assert await task == str(i)
                else:
                    with pytest.raises(asyncio.CancelledError):
                        await task
            assert await asyncio.gather(*(client.get(f"k{i}") for i in range(100))) == [str(i) for i in range(100)]

    asyncio.run(main())


def test_a_blocking_command_holds_up_no_one(redis_url: str) -> None:
    async def main() -> None:
        async with multiplexed(redis_url) as client:
            waiting = asyncio.create_task(client.blpop(["list"], timeout=0))
            await asyncio.sleep(0.1)
            # Had BLPOP gone on the shared connection, these replies would queue behind it for ever.
            assert await asyncio.wait_for(client.incr("a"), HANG_GUARD) == 1
            await asyncio.wait_for(client.rpush("list", "x"), HANG_GUARD)
            assert await asyncio.wait_for(waiting, HANG_GUARD) == ("list", "x")

    asyncio.run(main())


def test_commands_on_a_killed_connection_are_sent_again_and_a_new_one_opens(redis_url: str) -> None:
    async def main() -> None:
        async with multiplexed(redis_url) as client:
            assert await client.incrby("marker", 1) == 1
            [lane] = connections_last_running(redis_url, "incrby")
            admin = redis.Redis.from_url(redis_url)
            admin.client_kill_filter(_id=lane["id"])
            replies = await asyncio.wait_for(asyncio.gather(*(client.incrby("marker", 1) for _ in range(50))),
                                             HANG_GUARD)
            assert sorted(replies) == list(range(2, 52))  # none lost; none counted twice (nothing had reached Redis)
            assert await client.decrby("marker", 1) == 50
            [fresh] = connections_last_running(redis_url, "decrby")
            assert fresh["id"] != lane["id"]

    asyncio.run(main())


def test_without_redis_a_command_fails_with_a_connection_error() -> None:
    async def main() -> None:
        async with multiplexed(f"redis://127.0.0.1:{free_port()}/0") as client:
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(client.incr("a"), HANG_GUARD)

    asyncio.run(main())
