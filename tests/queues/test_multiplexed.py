"""The jobs' Redis client: short commands of many tasks share one connection, on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, OutOfMemoryError, ResponseError

from cluster.queues.connection import async_client
from cluster.queues.multiplexed import MultiplexedRedis, handshake, shares_connection
from cluster.queues.resp import encode_command, reply_error
from tests.support import free_port, run_async, wait_for

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


def on_shared_connection(client: MultiplexedRedis) -> bool:
    """Whether the client's commands went on its shared connection (not all down redis-py's path)."""
    lane = client._lane
    return lane is not None and lane.ready and lane.failed is None


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

    run_async(main)


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

    run_async(main)


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

    run_async(main)


def test_a_blocking_command_holds_up_no_one(redis_url: str) -> None:
    async def main() -> None:
        async with multiplexed(redis_url) as client:
            waiting = asyncio.create_task(client.blpop(["list"], timeout=0))
            await asyncio.sleep(0.1)
            # Had BLPOP gone on the shared connection, these replies would queue behind it for ever.
            assert await asyncio.wait_for(client.incr("a"), HANG_GUARD) == 1
            await asyncio.wait_for(client.rpush("list", "x"), HANG_GUARD)
            assert await asyncio.wait_for(waiting, HANG_GUARD) == ("list", "x")

    run_async(main)


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

    run_async(main)


def test_without_redis_a_command_fails_with_a_connection_error() -> None:
    async def main() -> None:
        async with multiplexed(f"redis://127.0.0.1:{free_port()}/0") as client:
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(client.incr("a"), HANG_GUARD)

    run_async(main)


def spread(client: redis.asyncio.Redis) -> list[Callable[[], Awaitable[Any]]]:
    """Commands of every reply shape redis-py parses: strings, numbers, None, lists, hashes made dicts, sets,
    scores as floats, streams, a script's nested reply, raw bytes (DUMP), errors of several classes."""
    script = "return {KEYS[1], ARGV[1], 7, redis.call('HGETALL', KEYS[2])}"
    sha = hashlib.sha1(script.encode()).hexdigest()
    return [
        lambda: client.set("s", "héllo"), lambda: client.get("s"), lambda: client.get("missing"),
        lambda: client.mget(["s", "missing"]), lambda: client.incr("n"), lambda: client.incrbyfloat("f", 1.5),
        lambda: client.exists("s", "missing"), lambda: client.expire("s", 100), lambda: client.ttl("s"),
        lambda: client.hset("h", mapping={"a": "1", "b": "2"}), lambda: client.hgetall("h"),
        lambda: client.hmget("h", ["a", "zz"]), lambda: client.hincrby("h", "a", 5),
        lambda: client.rpush("l", "x", "y"), lambda: client.lrange("l", 0, -1),
        lambda: client.sadd("set", "p", "q"), lambda: client.smembers("set"), lambda: client.sismember("set", "p"),
        lambda: client.zadd("z", {"m1": 1.5, "m2": 2}), lambda: client.zrange("z", 0, -1, withscores=True),
        lambda: client.zscore("z", "m1"),
        lambda: client.xadd("st", {"k": "v"}, id="1-0"), lambda: client.xgroup_create("st", "g", id="0"),
        lambda: client.xreadgroup("g", "c", {"st": ">"}, count=5), lambda: client.xpending("st", "g"),
        lambda: client.xrange("st"), lambda: client.xgroup_create("st", "g", id="0"),  # BUSYGROUP
        lambda: client.script_load(script), lambda: client.evalsha(sha, 2, "s", "h", "arg"),
        lambda: client.script_exists(sha), lambda: client.type("h"), lambda: client.ping(),
        lambda: client.dump("s"), lambda: client.hincrby("s", "f", 1),  # WRONGTYPE
        lambda: client.evalsha("0" * 40, 0),  # NOSCRIPT
        lambda: client.execute_command("NOSUCHCOMMAND", "x"),  # ERR unknown command
        lambda: client.set("big", 10**20), lambda: client.get("big"),
    ]


async def replies(calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Each call's reply in turn, an error as (class, message)."""
    out: list[Any] = []
    for call in calls:
        try:
            out.append(await call())
        except redis.RedisError as exc:
            out.append((type(exc), str(exc)))
    return out


PROTOCOLS = [pytest.param({}, id="default-protocol"), pytest.param({"protocol": 2}, id="resp2"),
             pytest.param({"protocol": 3}, id="resp3")]


@pytest.mark.parametrize("decode", [True, False], ids=["decoded", "bytes"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_replies_equal_redis_pys_own(redis_url: str, decode: bool, protocol: dict[str, int]) -> None:
    async def main() -> None:
        admin = redis.Redis.from_url(redis_url)
        plain = redis.asyncio.Redis.from_url(redis_url, decode_responses=decode, **protocol)
        expected = await replies(spread(plain))
        await plain.aclose()
        admin.flushall()
        admin.script_flush()
        pool = redis.asyncio.ConnectionPool.from_url(redis_url, decode_responses=decode, **protocol)
        client = MultiplexedRedis(connection_pool=pool)
        try:
            assert await replies(spread(client)) == expected
            assert on_shared_connection(client)
        finally:
            await client.aclose(close_connection_pool=True)
        # the spread does hit every kind of reply it claims to
        assert {t for t, _ in (r for r in expected if isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], type))
                } == {ResponseError, NoScriptError}
        assert isinstance(expected[10], dict) and isinstance(expected[16], set) and isinstance(expected[32], bytes)
        assert expected[1] == ("héllo" if decode else "héllo".encode())

    run_async(main)


def test_noscript_reaches_the_script_object_which_loads_the_script_and_retries(redis_url: str) -> None:
    async def main() -> None:
        async with multiplexed(redis_url) as client:
            script = client.register_script("return tonumber(ARGV[1]) * 2")
            with pytest.raises(NoScriptError):
                await client.evalsha(script.sha, 0, 4)
            assert await script(args=[4]) == 8  # NOSCRIPT, SCRIPT LOAD, EVALSHA, all on the shared connection
            assert on_shared_connection(client)
            assert await client.script_exists(script.sha) == [True]

    run_async(main)


@pytest.fixture(scope="module")
def guarded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server of this module's own, on a port and a Unix socket, that wants a password (the default
    user's is "secret"; user "lane" has "pw"): (port, socket path)."""
    directory = tmp_path_factory.mktemp("guarded-redis")
    port, sock = free_port(), directory / "redis.sock"
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", str(sock),
         "--unixsocketperm", "700", "--dir", str(directory), "--save", "", "--appendonly", "no",
         "--requirepass", "secret", "--user", "lane", "on", ">pw", "~*", "&*", "+@all"],
        stdout=(directory / "log").open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: redis.Redis(port=port, password="secret").ping(), 30, 0.05, "the guarded redis-server")
        yield port, sock
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("via", ["tcp-user", "unix-password"])
def test_the_shared_connection_logs_in_selects_the_database_and_names_itself(
        guarded_redis: tuple[int, Path], via: str, protocol: dict[str, int]) -> None:
    port, sock = guarded_redis
    name = f"jobs-{via}-{protocol.get('protocol', 'default')}"
    url, user = {"tcp-user": (f"redis://lane:pw@127.0.0.1:{port}/3?client_name={name}", "lane"),
                 "unix-password": (f"unix://:secret@{sock}?db=3&client_name={name}", "default")}[via]
    admin = redis.Redis(port=port, password="secret", db=3, decode_responses=True)
    admin.flushall()

    async def main() -> None:
        pool = redis.asyncio.ConnectionPool.from_url(url, decode_responses=True, **protocol)
        client = MultiplexedRedis(connection_pool=pool)
        try:
            assert await client.hset("h", mapping={"a": "1"}) == 1
            assert await client.hgetall("h") == {"a": "1"}
            assert on_shared_connection(client)
            [lane] = [c for c in admin.client_list() if c["cmd"] == "hgetall" and c["name"] == name]
            assert (lane["db"], lane["user"]) == ("3", user)
        finally:
            await client.aclose(close_connection_pool=True)
        assert admin.hgetall("h") == {"a": "1"}  # in database 3

        # a wrong password: the shared connection gives up, redis-py's path says why
        wrong = MultiplexedRedis(connection_pool=redis.asyncio.ConnectionPool.from_url(
            url.replace(":pw@", ":nope@").replace(":secret@", ":nope@"), **protocol))
        try:
            with pytest.raises(RedisConnectionError, match="invalid username-password pair"):
                await asyncio.wait_for(wrong.get("h"), HANG_GUARD)
        finally:
            await wrong.aclose(close_connection_pool=True)

    run_async(main)


def test_replies_in_flight_on_a_killed_connection_come_back_on_a_new_one(redis_url: str) -> None:
    async def main() -> None:
        async with multiplexed(redis_url) as client:
            admin = redis.Redis.from_url(redis_url)
            await client.set("k", "0")
            [first] = connections_last_running(redis_url, "set")

            async def writer(i: int) -> list[bool | None]:
                return [await client.set(f"k{i}-{j}", str(j)) for j in range(50)]

            tasks = [asyncio.create_task(writer(i)) for i in range(40)]
            await asyncio.sleep(0)  # the first SETs are written, not answered
            admin.client_kill_filter(_id=first["id"])
            results = await asyncio.wait_for(asyncio.gather(*tasks), HANG_GUARD)
            assert all(all(r is True for r in rs) for rs in results)  # SET is idempotent: a resend is harmless
            assert admin.mget([f"k{i}-{j}" for i in range(40) for j in range(50)]) == [
                str(j).encode() for _ in range(40) for j in range(50)]
            assert on_shared_connection(client)
            assert first["id"] not in {c["id"] for c in connections_last_running(redis_url, "set")}

    run_async(main)


@pytest.mark.skipif(shutil.which("redis-sentinel") is None, reason="redis-sentinel is needed (scripts/install-system-deps)")
def test_through_sentinel_the_shared_connection_goes_to_the_master_it_names(tmp_path: Path) -> None:
    master_port, sentinel_port = free_port(), free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor lane-master 127.0.0.1 {master_port} 1\n")
    procs = [subprocess.Popen(["redis-server", "--port", str(master_port), "--bind", "127.0.0.1", "--dir",
                               str(tmp_path), "--save", "", "--appendonly", "no", "--requirepass", "secret"],
                              stdout=(tmp_path / "redis.log").open("wb"), stderr=subprocess.STDOUT),
             subprocess.Popen(["redis-sentinel", str(conf)], stdout=(tmp_path / "sentinel.log").open("wb"),
                              stderr=subprocess.STDOUT)]
    try:
        master = redis.Redis(port=master_port, password="secret", db=2, decode_responses=True)
        wait_for(master.ping, 30, 0.05, "the master")
        sentinel = redis.Redis(port=sentinel_port, decode_responses=True)
        wait_for(lambda: sentinel.sentinel_master("lane-master"), 30, 0.1, "sentinel to know the master")

        async def main() -> None:
            pooled = async_client(f"redis+sentinel://:secret@127.0.0.1:{sentinel_port}/lane-master/2", blocking=False)
            client = MultiplexedRedis(connection_pool=pooled.connection_pool)
            try:
                assert await asyncio.gather(*(client.incr("n") for _ in range(20))) == list(range(1, 21))
                assert on_shared_connection(client)
            finally:
                await client.aclose()
                await pooled.aclose()

        run_async(main)
        assert master.get("n") == "20"  # database 2 of the master
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def test_commands_are_encoded_as_redis_py_encodes_them() -> None:
    assert encode_command(("SET", "k", "é", 3, 1.5, b"\x00")) == (
        b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n$1\r\n3\r\n$3\r\n1.5\r\n$1\r\n\x00\r\n")
    assert encode_command(("SCRIPT LOAD", "return 1")) == b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$8\r\nreturn 1\r\n"
    assert encode_command(("SET", "k", "é"), "latin-1") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"
    for bad in (True, None, {"a": 1}, [1]):
        with pytest.raises(DataError, match=f"Invalid input of type: '{type(bad).__name__}'"):
            encode_command(("SET", "k", bad))


def test_error_replies_become_redis_pys_exception_classes() -> None:
    error = reply_error("NOSCRIPT No matching script. Please use EVAL.")
    assert type(error) is NoScriptError and str(error) == "No matching script. Please use EVAL."
    error = reply_error("ERR unknown command 'X'")
    assert type(error) is ResponseError and str(error) == "unknown command 'X'"
    error = reply_error("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert type(error) is ResponseError and str(error).startswith("WRONGTYPE ")
    assert type(reply_error("OOM command not allowed when used memory > 'maxmemory'.")) is OutOfMemoryError
    assert isinstance(reply_error("LOADING Redis is loading the dataset in memory"), RedisConnectionError)
    assert type(reply_error("BUSYGROUP Consumer Group name already exists")) is ResponseError


def test_the_handshake_gives_the_connection_what_the_pool_s_have() -> None:
    assert handshake(2, {}) == () and handshake(3, {}) == (("HELLO", 3),)
    assert handshake(2, {"password": "p", "db": 3, "client_name": "jobs"}) == (
        ("AUTH", "p"), ("CLIENT", "SETNAME", "jobs"), ("SELECT", 3))
    assert handshake(2, {"username": "u", "password": "p"}) == (("AUTH", "u", "p"),)
    assert handshake(3, {"password": "p", "client_name": "jobs", "db": "1"}) == (
        ("HELLO", 3, "AUTH", "default", "p", "SETNAME", "jobs"), ("SELECT", 1))
