"""The HTTP tier: gunicorn's arbiter, started programmatically, serving aiohttp workers.

Run by the supervisor as ``python -m cluster.arbiter.http_tier SETTINGS_JSON``. It is
gunicorn's own arbiter with these changes made in a subclass:

- the worker count follows a target file the supervisor writes, and a HUP
  reload keeps the current count (gunicorn resets it to ``workers``, issue 716);
- a worker still inside its boot grace is not taken for hung;
- a reload (HUP) retires an old worker only once a new one serves in its place
  (each worker says so on its ``ReadyPipe``), however long the app takes to
  build; gunicorn retires them as soon as it has forked the new ones;
- a scale-down retires the least busy worker (``cluster.arbiter.retire``), not the
  oldest, and a worker already told to stop is not counted nor told twice;
- a retired worker drains its keep-alive connections before it stops
  (``cluster.workers.gunicorn_worker.DrainingWorker``);
- each worker's exit is reported to the supervisor with its reason
  (``cluster.arbiter.exits``): retired, replaced by a reload, timed out, crashed;
- nothing else runs in this process: the arbiter reaps with ``waitpid(-1)``,
  so helper subprocesses belong to the supervisor, never here.
"""

from __future__ import annotations

import grp
import importlib.util
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from cluster.arbiter import socket_activation
from cluster.arbiter.exits import EXITS_SOCKET, ExitReporter, exit_reason
from cluster.arbiter.retire import CpuRates, WorkerLoad, to_retire, to_spawn
from cluster.config import Settings, mask_text
from cluster.config.state_files import WORKER_TARGET, read_target
from cluster.observability.logs import configure, process_handler, redact_with, reopen, set_role
from cluster.observability.metrics import CHILD_RESTARTS, mark_dead
from cluster.workers.app import build_runner
from cluster.workers.gunicorn_worker import ReadyPipe
from cluster.workers.state import WORKER_STATE

log = logging.getLogger("cluster.arbiter.http_tier")


def worker_class(event_loop: str) -> str:
    """aiohttp's uvloop worker for ``uvloop`` (``auto``: when uvloop is installed), else its asyncio worker,
    both listening with gunicorn's backlog (``workers.gunicorn_worker``)."""
    if event_loop == "uvloop" or (event_loop == "auto" and importlib.util.find_spec("uvloop") is not None):
        return "cluster.workers.gunicorn_worker.UVLoopWorker"
    return "cluster.workers.gunicorn_worker.AsyncioWorker"


def heartbeat_dir(settings: Settings) -> str | None:
    """Heartbeat files on tmpfs: on disk a heartbeat can block (gunicorn issues 1305, 1863)."""
    if settings.server.worker_tmp_dir:
        return settings.server.worker_tmp_dir
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


class JsonLogger(glogging.Logger):
    """gunicorn's logger writing through this process's own handler (format, file)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.handlers = [process_handler()]

    def reopen_files(self) -> None:
        # gunicorn calls this on SIGUSR1 in the arbiter and in each worker
        super().reopen_files()
        reopen()


def _pre_fork(server: Arbiter, worker: Any) -> None:
    worker.ready_pipe = ReadyPipe()


def _post_fork(server: Arbiter, worker: Any) -> None:
    set_role("http-worker")
    WORKER_STATE.reset_after_fork()
    worker.ready_pipe.forked(in_child=True)
    for sibling in server.WORKERS.values():
        sibling.ready_pipe.close()


def unix_umask(mode: str) -> int:
    """The umask under which gunicorn's bind() creates a unix socket of exactly ``mode`` (octal text).

    gunicorn binds a ``unix:`` address under its ``umask`` setting, 0 by default: a world-connectable
    socket. With this one the socket is born with ``server.unix_mode``, with no window in between.
    """
    return 0o777 & ~int(mode, 8)


def _unix_group(server: Arbiter) -> None:
    """``server.unix_group``: the group of each ``unix:`` bind's socket (gunicorn's own group setting would
    also change the workers' group)."""
    settings = server.app.settings.server
    if not settings.unix_group:
        return
    try:
        gid = int(settings.unix_group) if settings.unix_group.isdigit() else grp.getgrnam(settings.unix_group).gr_gid
    except KeyError:
        log.error("server.unix_group %r: no such group; the sockets keep our group", settings.unix_group)
        return
    for bind in settings.bind:
        if bind.startswith("unix:"):
            os.chown(bind[len("unix:"):], -1, gid)


def _child_exit(server: "ClusterArbiter", worker: Any) -> None:
    mark_dead(worker.pid)
    worker.ready_pipe.close()
    server.report_exit(worker)
    # The worker is already out of WORKERS: fewer than wanted means a replacement
    # comes, unless the arbiter is stopping (it drops its listeners first).
    if server.LISTENERS and len(server.WORKERS) < server.num_workers:
        CHILD_RESTARTS.labels("http-worker").inc()


class ClusterArbiter(Arbiter):
    """gunicorn's arbiter, steered by the supervisor's target file."""

    def __init__(self, app: "HttpTier") -> None:
        self.target_path = WORKER_TARGET.path(app.settings.server.state_dir)
        self.boot_grace = app.settings.server.boot_grace
        self._target_mtime = 0
        self._retiring: set[int] = set()
        self._stale_age = 0
        self._reloading = False
        self.cpu_rates = CpuRates()
        self.exits = ExitReporter(str(Path(app.settings.server.state_dir) / EXITS_SOCKET))
        super().__init__(app)

    def report_exit(self, worker: Any) -> None:
        """Tell the supervisor why ``worker`` left (called from the child_exit hook, once it is reaped)."""
        reason = exit_reason(
            stopping=not self.LISTENERS,
            retiring=worker.pid in self._retiring,
            stale=worker.age <= self._stale_age,
            timed_out=worker.aborted,
        )
        self.exits.report(worker.pid, reason)

    def _follow_target(self) -> None:
        try:
            mtime = self.target_path.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._target_mtime:
            return
        self._target_mtime = mtime
        target = read_target(self.target_path)
        if target is not None and target != self.num_workers:
            self.log.info("worker target %s -> %s", self.num_workers, target)
            self.num_workers = target

    def manage_workers(self) -> None:
        """gunicorn's, but retiring the least busy workers and not counting those already retiring.

        gunicorn counts a worker it sent SIGTERM until it is reaped; ranking by
        load instead of age, that would retire a second worker while the first
        finishes its requests, so retiring pids are tracked here.
        """
        self._follow_target()
        self._retiring &= set(self.WORKERS)
        self.cpu_rates.refresh(self.WORKERS, time.monotonic())
        loads = [WorkerLoad(pid, w.age, self.cpu_rates.rate(pid), w.age <= self._stale_age, w.ready_pipe.heard())
                 for pid, w in self.WORKERS.items() if pid not in self._retiring]
        for _ in range(to_spawn(loads, self.num_workers)):
            self.spawn_worker()
        for pid in to_retire(loads, self.num_workers):
            self.log.info("retiring worker %s (cpu %.0f%%)", pid, self.cpu_rates.rate(pid) * 100)
            self._retiring.add(pid)
            self.kill_worker(pid, signal.SIGTERM)

    def reload(self) -> None:
        # Every worker alive now runs the old configuration: retire those first.
        self._stale_age = self.worker_age
        self._reloading = True
        try:
            super().reload()
        finally:
            self._reloading = False

    def reap_workers(self) -> None:
        super().reap_workers()
        if self._reloading:
            # gunicorn's reload waits here (up to graceful_timeout) for the old workers to leave:
            # meanwhile retire each as a new one serves, which gunicorn did at once, before any served.
            self.manage_workers()

    def spawn_worker(self) -> int:
        pid = super().spawn_worker()
        worker = self.WORKERS[pid]
        worker.ready_pipe.forked(in_child=False)
        worker.spawned_at = time.monotonic()
        return pid

    def murder_workers(self) -> None:
        # A booting worker has not started its heartbeat yet: beat for it
        # until its grace is over, so a slow import is not taken for a hang.
        now = time.monotonic()
        for worker in self.WORKERS.values():
            if now - getattr(worker, "spawned_at", 0.0) < self.boot_grace:
                worker.tmp.notify()
        super().murder_workers()


class HttpTier(BaseApplication):
    """gunicorn configured from our settings; the app is built in each worker."""

    def __init__(self, settings_path: Path) -> None:
        self.settings_path = settings_path
        self.settings: Settings
        super().__init__()

    def load_config(self) -> None:
        # Read again on every HUP reload: the supervisor rewrites the file
        # with the freshly validated configuration before it signals.
        self.settings = Settings.model_validate_json(self.settings_path.read_text())
        server = self.settings.server
        state_dir = Path(server.state_dir)
        target = read_target(WORKER_TARGET.path(state_dir)) or self.settings.workers.min
        options = {
            "bind": server.bind,
            "workers": target,
            "worker_class": worker_class(server.event_loop),
            "timeout": server.timeout,
            "graceful_timeout": server.graceful_timeout,
            "keepalive": server.keepalive,
            "backlog": server.backlog,
            "worker_tmp_dir": heartbeat_dir(self.settings),
            "logger_class": "cluster.arbiter.http_tier.JsonLogger",
            "loglevel": server.log_level,
            "accesslog": None,
            "proc_name": "cluster-http",
            "control_socket": str(state_dir / "gunicorn.ctl"),
            "pre_fork": _pre_fork,
            "post_fork": _post_fork,
            "when_ready": _unix_group,
            "umask": unix_umask(server.unix_mode),
            "child_exit": _child_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        settings = self.settings

        async def factory() -> Any:
            return await build_runner(settings)

        return factory

    def run(self) -> None:
        ClusterArbiter(self).run()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    socket_activation.adopt(os.environ, os.getpid())
    tier = HttpTier(Path(args[0]))
    configure("http-arbiter", tier.settings.server.log_level, tier.settings.logging.format, tier.settings.logging.file)
    redact_with(mask_text)
    tier.run()


if __name__ == "__main__":
    main()
