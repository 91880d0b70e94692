"""The queue tier inside the supervisor: Redis (given, or an embedded redis-server) and the pools.

With ``redis.url`` the pools use it (and we warn if that Redis may evict
keys). Without one, a private redis-server runs as a supervised child on a
unix socket in the state dir, append-only, never evicting. Either way the
effective URL goes into ``settings.redis.url`` before the settings file is
rewritten and before any child starts, so HTTP workers and pools agree on it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio
from aiohttp import web

from cluster.supervisor.children import ChildSpec, SupervisedChild
from config import PRIORITIES
from queues.connection import UNAVAILABLE_ERRORS, async_client, masked

if TYPE_CHECKING:
    from cluster.supervisor.core import Supervisor

log = logging.getLogger("cluster.queues")
MAX_UNIX_PATH = 100
STOP_MARGIN = 5.0
MIN_REDIS = (7, 0)


def redis_argv(binary: str, state_dir: Path, port: int | None = None) -> tuple[list[str], str]:
    """redis-server's command line and the URL to reach it: a unix socket, or localhost:port when
    the socket path would be too long for AF_UNIX."""
    data = state_dir / "redis"
    data.mkdir(mode=0o700, exist_ok=True)
    sock = state_dir / "redis.sock"
    argv = [binary, "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--maxmemory-policy", "noeviction", "--daemonize", "no", "--logfile", ""]
    if port is None and len(str(sock)) <= MAX_UNIX_PATH:
        return argv + ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"], f"unix://{sock}"
    assert port is not None, "a TCP port is needed when the socket path is too long"
    return argv + ["--port", str(port), "--bind", "127.0.0.1"], f"redis://127.0.0.1:{port}/0"


def eviction_problems(policy: str | None, version: str | None) -> list[str]:
    """What is wrong with a given Redis for a queue (it may drop jobs, or is too old)."""
    problems = []
    if policy and policy != "noeviction":
        problems.append(f"maxmemory-policy is {policy!r}: under memory pressure Redis will evict queued jobs; "
                        "set it to 'noeviction'")
    if version:
        parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if parts < MIN_REDIS:
            problems.append(f"Redis {version} is older than 7.0")
    return problems


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class QueueTier:
    name = "queues"

    def __init__(self, supervisor: "Supervisor") -> None:
        self.supervisor = supervisor
        self.mode = "off"
        self.reason = ""
        self.url: str | None = None
        self.pools: list[SupervisedChild] = []
        self.problems: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        settings = self.supervisor.settings
        if settings.redis.url:
            self.mode, self.url = "external", settings.redis.url
            self._tasks.append(asyncio.create_task(self._inspect(settings.redis.url), name="inspect-redis"))
        elif settings.redis.embedded and (binary := shutil.which("redis-server")):
            self.mode, self.url = "embedded", self._add_embedded(binary)
        else:
            self.reason = ("no redis.url (REDIS_URL) is set and "
                           + ("redis-server is not installed" if settings.redis.embedded else "redis.embedded is off"))
            log.warning("queue tier off: %s; jobs cannot be enqueued", self.reason)
            return
        self._publish_url()
        self._add_pools()

    def _add_embedded(self, binary: str) -> str:
        """Supervise a private redis-server; returns its URL."""
        state_dir = self.supervisor.state_dir
        port = None if len(str(state_dir / "redis.sock")) <= MAX_UNIX_PATH else _free_port()
        argv, url = redis_argv(binary, state_dir, port)
        self.supervisor.add_child(ChildSpec(name="redis", group="redis", argv=argv,
                                            env=self.supervisor.child_env("redis"), stop_timeout=30))
        log.info("embedded redis-server at %s", url)
        return url

    def _publish_url(self) -> None:
        """Put the effective URL into the settings file every child reads."""
        sup = self.supervisor
        sup.settings = sup.settings.model_copy(
            update={"redis": sup.settings.redis.model_copy(update={"url": self.url})})
        sup.write_settings()

    def _add_pools(self) -> None:
        sup = self.supervisor
        queues = sup.settings.queues
        for priority in PRIORITIES:
            pool = queues.pool(priority)
            for index in range(pool.workers):
                self.pools.append(sup.add_child(ChildSpec(
                    name=f"queue-{priority}-{index}",
                    group=f"queue-{priority}",
                    argv=[sys.executable, "-m", "queues.pool", str(sup.settings_path), priority],
                    env=sup.child_env(f"queue-{priority}"),
                    stop_timeout=pool.timeout + queues.kill_grace + STOP_MARGIN,
                )))

    async def _inspect(self, url: str) -> None:
        client = async_client(url, max_connections=2)
        try:
            info = await client.info("server")
            try:
                policy = (await client.config_get("maxmemory-policy")).get("maxmemory-policy")
            except redis.exceptions.ResponseError:  # CONFIG is often disabled on managed Redis
                policy = None
            self.problems = eviction_problems(policy, info.get("redis_version"))
            for problem in self.problems:
                log.warning("Redis at %s: %s", masked(url), problem)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("Redis at %s is not reachable yet (%s); the queue pools keep retrying", masked(url), exc)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Stop the pools first, while Redis still runs, so their last acks land."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(pool.stop() for pool in self.pools))

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "redis": masked(self.url),
            "reason": self.reason or None,
            "problems": self.problems,
            "pools": {p: self.supervisor.settings.queues.pool(p).workers for p in PRIORITIES} if self.url else {},
        }

    def add_control_routes(self, app: web.Application) -> None:
        """The queue status is served by the HTTP workers and the CLI straight from Redis."""
