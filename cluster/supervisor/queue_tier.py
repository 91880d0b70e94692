"""The queue tier inside the supervisor: Redis (given, or an embedded redis-server) and the pools.

With ``redis.url`` the pools use it (and we warn if that Redis may evict
keys). Without one, a private redis-server runs as a supervised child on a
unix socket in the state dir, with a password drawn at each start,
append-only, never evicting, its maxmemory sized from the queue bounds. Either way the
effective URL goes into ``settings.redis.url`` before the settings file is
rewritten and before any child starts, so HTTP workers and pools agree on it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio
from aiohttp import web

from cluster.component import Host
from cluster.supervisor.children import ChildSpec, ExitReport, SupervisedChild
from cluster.supervisor.forked import ForkedChild, ForkServerChild, fork_server_spec, make_fork_server
from cluster.supervisor.subreaper import OrphanReaper, become_subreaper
from cluster.supervisor.leftovers import end_leftovers, redis_pidfile
from cluster.supervisor.state_dir import private_subdir
from cluster.supervisor.redis_log import LOG_NAME, RedisLogRelay, keep_previous
from cluster.safe_files import write_file
from cluster.config import PRIORITIES, Settings
from cluster.config.masking import mask_url
from cluster.queues.connection import UNAVAILABLE_ERRORS, async_client



class ChildHost(Host, Protocol):
    """What the queue tier needs of the supervisor beyond a component's view: children, and the Redis URL."""

    @property
    def settings_path(self) -> Path: ...

    def child_env(self, role: str) -> dict[str, str]: ...

    def add_child(self, spec: ChildSpec,
                  make: Callable[[ChildSpec, ExitReport], SupervisedChild] = SupervisedChild) -> SupervisedChild: ...

    def settle_redis_url(self, url: str) -> None:
        """Make ``url`` the effective ``redis.url`` every child reads (before any child starts)."""

log = logging.getLogger("cluster.queues")
MIB = 1024 * 1024
BASE_MEMORY = 64 * MIB
JOB_OVERHEAD = 1024
DEFAULT_PAYLOAD_BOUND = 64 * 1024  # queues.max_payload_bytes's default, until that setting exists
STOP_MARGIN = 5.0
MIN_REDIS = (7, 0)


def redis_maxmemory(settings: Settings) -> int:
    """The embedded Redis's maxmemory in bytes: ``redis.maxmemory_mb``, else sized from the queue bounds.

    Every queue full (ready and delayed) of jobs at the payload bound, twice
    (a job's envelope and its result), plus a base for Redis itself.
    """
    if settings.redis.maxmemory_mb:
        return settings.redis.maxmemory_mb * MIB
    per_job = getattr(settings.queues, "max_payload_bytes", DEFAULT_PAYLOAD_BOUND) + JOB_OVERHEAD
    jobs = sum(2 * settings.queues.pool(p).max_size for p in PRIORITIES)
    return BASE_MEMORY + 2 * jobs * per_job


def redis_config(state_dir: Path, password: str, maxmemory: int) -> str:
    """The embedded redis-server's config file: a unix socket only, a password, bounded, never evicting.

    A file (0600), not the command line: a password in argv is visible to every local user.
    Its log goes to a file too (``redis_log``): the terminal and the journal get our lines only.
    """
    lines = [
        f"dir {state_dir / 'redis'}", "appendonly yes", "appendfsync everysec", 'save ""',
        "maxmemory-policy noeviction", f"maxmemory {maxmemory}", "daemonize no", f"logfile {state_dir / LOG_NAME}",
        "port 0", f"unixsocket {state_dir / 'redis.sock'}", "unixsocketperm 700", f"requirepass {password}",
        f"pidfile {redis_pidfile(state_dir)}",
    ]
    return "\n".join(lines) + "\n"


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


class QueueTier:
    name = "queues"

    def __init__(self, supervisor: ChildHost) -> None:
        self.supervisor = supervisor
        self.mode = "off"
        self.reason = ""
        self.url: str | None = None
        self.pools: list[SupervisedChild] = []
        self.redis_child: SupervisedChild | None = None
        self.fork_server: ForkServerChild | None = None
        self._reaper: OrphanReaper | None = None
        self.problems: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._redis_log: RedisLogRelay | None = None

    async def start(self) -> None:
        settings = self.supervisor.settings
        if settings.redis.url:
            self.mode, self.url = "external", settings.redis.url
            self._tasks.append(asyncio.create_task(self._inspect(settings.redis.url), name="inspect-redis"))
        elif settings.redis.embedded and (binary := shutil.which("redis-server")):
            await end_leftovers(self.supervisor.state_dir, self.supervisor.settings_path, self._stop_timeout())
            self.mode, self.url = "embedded", self._add_embedded(binary)
        else:
            self.reason = ("no redis.url (REDIS_URL) is set and "
                           + ("redis-server is not installed" if settings.redis.embedded else "redis.embedded is off"))
            log.warning("queue tier off: %s; jobs cannot be enqueued", self.reason)
            return
        self._publish_url()
        if settings.queues.jobs_module:
            self._add_pools()
        else:
            self.reason = "no jobs module (queues.jobs_module / --jobs): no queue pool processes run"
            log.info("queue tier: %s; Redis serves the enqueue API and the cache", self.reason)

    def _add_embedded(self, binary: str) -> str:
        """Supervise a private redis-server (unix socket, a fresh password each start); returns its URL.

        The state dir check already refused a path too long for the socket: there is no TCP fallback.
        """
        state_dir = self.supervisor.state_dir
        private_subdir(state_dir, "redis")  # a link there is refused: Redis's data never goes through it
        password = secrets.token_urlsafe(32)
        conf = state_dir / "redis.conf"
        write_file(conf, redis_config(state_dir, password, redis_maxmemory(self.supervisor.settings)))
        self._redis_log = RedisLogRelay(keep_previous(state_dir))
        self._tasks.append(asyncio.create_task(self._redis_log.run(), name="redis-log"))
        # No death signal: if the supervisor is killed, its consumers finish their jobs and still
        # acknowledge them; the next start stops this redis-server (leftovers.end_leftovers).
        self.redis_child = self.supervisor.add_child(ChildSpec(
            name="redis", group="redis", argv=[binary, str(conf)], die_with_parent=False,
            env=self.supervisor.child_env("redis"), stop_timeout=30))
        url = f"unix://:{password}@{state_dir / 'redis.sock'}"
        log.info("embedded redis-server at %s", mask_url(url))
        return url

    def _publish_url(self) -> None:
        """Put the effective URL into the settings file every child reads."""
        assert self.url is not None
        self.supervisor.settle_redis_url(self.url)

    def _add_pools(self) -> None:
        sup = self.supervisor
        queues = sup.settings.queues
        make = self._pool_maker() if queues.fork_server else SupervisedChild
        for priority in PRIORITIES:
            pool = queues.pool(priority)
            for index in range(pool.workers):
                self.pools.append(sup.add_child(ChildSpec(
                    name=f"queue-{priority}-{index}",
                    group=f"queue-{priority}",
                    argv=[sys.executable, "-m", "cluster.queues.pool", str(sup.settings_path), priority],
                    env=sup.child_env(f"queue-{priority}"),
                    stop_timeout=pool.timeout + queues.kill_grace + STOP_MARGIN,
                ), make))

    def _pool_maker(self) -> Callable[[ChildSpec, ExitReport], SupervisedChild]:
        """Pools forked by a fork server the supervisor runs (it must be their subreaper), else spawned."""
        sup = self.supervisor
        if not any(sup.settings.queues.pool(p).workers for p in PRIORITIES):
            return SupervisedChild
        if not become_subreaper():
            log.warning("queue pools start as fresh interpreters: the supervisor cannot adopt forked ones")
            return SupervisedChild
        self._reaper = OrphanReaper(lambda: {c.process.pid for c in sup.children.values() if c.process})
        self._reaper.start()
        spec = fork_server_spec(str(sup.settings_path), sup.child_env("fork-server"), STOP_MARGIN)
        log.info("preloading the jobs module %s in a fork server: the pool processes fork from it",
                 sup.settings.queues.jobs_module)
        server = sup.add_child(spec, make_fork_server)
        assert isinstance(server, ForkServerChild)
        self.fork_server = server
        return lambda spec, report_exit: ForkedChild(spec, report_exit, fork_server=server)

    def _stop_timeout(self) -> float:
        """The longest a pool may take to stop (its jobs' timeout, the kill grace and a margin)."""
        queues = self.supervisor.settings.queues
        return max(queues.pool(p).timeout for p in PRIORITIES) + queues.kill_grace + STOP_MARGIN

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
                log.warning("Redis at %s: %s", mask_url(url), problem)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("Redis at %s is not reachable yet (%s); the queue pools keep retrying", mask_url(url), exc)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Stop the pools while Redis still runs, so their last acks land; the embedded Redis last.

        The supervisor has drained the HTTP tier before this. redis-server's
        SIGTERM shutdown flushes and fsyncs the append-only file before it exits.
        """
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(pool.stop() for pool in self.pools))
        if self.fork_server is not None:
            await self.fork_server.stop()
        if self._reaper is not None:
            self._reaper.stop()
        if self.redis_child is not None:
            await self.redis_child.stop()
        if self._redis_log is not None:
            self._redis_log.relay()  # what it said on its way out

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "redis": mask_url(self.url),
            "reason": self.reason or None,
            "problems": self.problems,
            "pools": {p: self.supervisor.settings.queues.pool(p).workers for p in PRIORITIES} if self.pools else {},
            "pool_start": ("fork-server" if self.fork_server else "spawn") if self.pools else None,
        }

    async def reload(self) -> None:
        """The pools keep their connections and count until a restart."""

    def add_control_routes(self, app: web.Application) -> None:
        """The queue status is served by the HTTP workers and the CLI straight from Redis."""
