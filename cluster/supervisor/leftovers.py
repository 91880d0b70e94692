"""What a supervisor that died without stopping leaves behind: its HTTP tier, queue consumers and redis-server.

Its HTTP tier drains on the SIGTERM the kernel sends at the supervisor's
death and holds the listening ports meanwhile: the next start waits for it,
bounded (``ports_released``; the policy is ``cluster.supervisor.takeover``).

The embedded redis-server does not die with the supervisor (its consumers
get SIGTERM then, finish the jobs in hand and must still acknowledge them),
so the next start of the same state dir ends what is left, in order: first
it lets the old consumers finish (they are already stopping), then it stops
the old redis-server, which writes its append-only file, and only then does
a new redis-server start on the same data.

Only processes of this user count: any local user can start a process whose
command line names our settings file, and waiting for it (or, as root,
killing it) would hand that user a lever on our start. The pid file is read
without following a link and removed, so redis-server writes a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import psutil

from cluster.config import state_files
from cluster.safe_files import read_file
from cluster.supervisor import takeover
from cluster.workers.control_client import socket_path

log = logging.getLogger("cluster.supervisor.leftovers")
POLL = 0.1
REDIS_STOP_TIMEOUT = 30.0


def redis_pidfile(state_dir: Path) -> Path:
    return state_files.REDIS_PID.path(state_dir)


def is_ours(uids: tuple[int, ...] | None, uid: int) -> bool:
    """Pure: a process whose real and effective uids are both ``uid`` (psutil's ``uids()``: real, effective, saved)."""
    return uids is not None and uids[0] == uid and uids[1] == uid


def _started_for(settings_path: Path) -> Iterator[tuple[psutil.Process, list[str]]]:
    """This user's processes whose arguments name this state dir's settings file, with their command lines
    (every child but redis-server: the HTTP arbiter and its workers, the fork server and the pools)."""
    uid = os.geteuid()
    for proc in psutil.process_iter(["cmdline", "uids"]):
        cmdline = proc.info.get("cmdline") or []
        if str(settings_path) in cmdline and is_ours(proc.info.get("uids"), uid):
            yield proc, cmdline


def old_consumers(settings_path: Path) -> list[psutil.Process]:
    """Queue pool processes of this user started for this state dir.

    A forked pool keeps its fork server's command line (``queues.fork_server``).
    """
    return [proc for proc, cmdline in _started_for(settings_path)
            if {"cluster.queues.pool", "cluster.queues.fork_server"} & set(cmdline)]


def supervisor_answers(state_dir: Path) -> bool:
    """A supervisor runs on this state dir: its control socket accepts a connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(socket_path(state_dir)))
        except OSError:
            return False
    return True


def previous_tree(state_dir: Path) -> frozenset[int]:
    """The pids a dead supervisor of this state dir left running (none while a supervisor answers on it:
    its tree is not a leftover)."""
    if supervisor_answers(state_dir):
        return frozenset()
    return frozenset(proc.pid for proc, _ in _started_for(state_files.SETTINGS.path(state_dir)))


async def ports_released(held: Callable[[], Mapping[str, takeover.Holders]], state_dir: Path,
                         limit: float) -> str | None:
    """Wait while the previous tree of this state dir holds the ports ``held`` reports (up to ``limit``
    seconds, logged once); the problem when a port stays held, or is held by anything else."""
    began, waited = time.monotonic(), False
    while True:
        verdict = takeover.judge(held(), previous_tree(state_dir), time.monotonic() - began, limit)
        if verdict.action != takeover.WAIT:
            if waited and verdict.action == takeover.GO:
                log.info("the previous tree released its ports after %.1f s", time.monotonic() - began)
            return verdict.line or None
        if not waited:
            log.warning(verdict.line)
            waited = True
        await asyncio.sleep(POLL)


def old_redis(state_dir: Path) -> psutil.Process | None:
    """This user's redis-server of a previous run of this state dir, if it still runs (checked, not just the
    pid: redis-server rewrites its command line, but it runs in its data dir)."""
    text = (read_file(redis_pidfile(state_dir), 32) or b"").strip()  # a planted link reads as no pid
    if not text.isdigit():
        return None
    try:
        proc = psutil.Process(int(text))
        if is_ours(tuple(proc.uids()), os.geteuid()) and "redis" in proc.name() \
                and Path(proc.cwd()) == state_dir / "redis":
            return proc
    except (OSError, psutil.Error):
        pass
    return None


async def _gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until these processes exit; the ones still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = procs
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return alive


async def end_leftovers(state_dir: Path, settings_path: Path, consumer_grace: float) -> None:
    """Let the consumers of a dead supervisor finish (up to ``consumer_grace``), then stop its redis-server."""
    consumers = old_consumers(settings_path)
    redis = old_redis(state_dir)
    # The new redis-server writes its own; a link planted there would have it write through.
    redis_pidfile(state_dir).unlink(missing_ok=True)
    if not consumers and redis is None:
        return
    log.warning("a previous supervisor of this state dir died without stopping: waiting for its %d queue "
                "consumer(s) to finish their jobs, then stopping its redis-server", len(consumers),
                extra={"consumers": [p.pid for p in consumers], "redis_pid": redis.pid if redis else None})
    for proc in await _gone(consumers, consumer_grace):
        log.warning("killing leftover queue consumer %d (still running after %.0fs)", proc.pid, consumer_grace)
        proc.kill()
    if redis is not None:
        redis.terminate()
        for proc in await _gone([redis], REDIS_STOP_TIMEOUT):
            proc.kill()
