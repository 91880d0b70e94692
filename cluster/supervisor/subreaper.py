"""The supervisor as a child subreaper: forked pools become its children, and orphans are reaped.

With ``PR_SET_CHILD_SUBREAPER`` a process orphaned below the supervisor is
re-parented to it instead of to init. That is how a pool process the fork
server double-forks becomes the supervisor's child. It also brings orphans
nobody asked for (an HTTP worker whose arbiter was killed, the rewrite child
of a redis-server that died): once they exit, their zombies are ours to
reap. ``OrphanReaper`` does it on SIGCHLD, for zombies that are no
supervised child's and stay zombies across two looks ``GRACE`` apart:
asyncio's child watcher reaps its own at once, so it never loses a status to us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

import psutil

from cluster.queues.process_control import PR_SET_CHILD_SUBREAPER, prctl

log = logging.getLogger("cluster.supervisor.subreaper")
GRACE = 1.0


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; False (logged) when the kernel refuses."""
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError as exc:
        log.warning("cannot become a child subreaper: %s", exc)
        return False
    return True


def unowned_zombies(owned: set[int]) -> set[int]:
    """Our children that exited and that no supervised child owns."""
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return set()
    zombies = set()
    for child in children:
        try:
            if child.pid not in owned and child.status() == psutil.STATUS_ZOMBIE:
                zombies.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return zombies


class OrphanReaper:
    """Reaps the zombies of orphans re-parented to the supervisor (``owned`` gives the pids it must not touch)."""

    def __init__(self, owned: Callable[[], set[int]]) -> None:
        self._owned = owned
        self._seen: set[int] = set()
        self._scheduled: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGCHLD, self._schedule)

    def _schedule(self) -> None:
        if self._scheduled is None and self._loop is not None:
            self._scheduled = self._loop.call_later(GRACE, self._look)

    def _look(self) -> None:
        self._scheduled = None
        zombies = unowned_zombies(self._owned())
        for pid in zombies & self._seen:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            log.info("reaped orphan %d", pid, extra={"orphan_pid": pid})
        self._seen = zombies - self._seen
        if self._seen:
            self._schedule()

    def stop(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGCHLD)
            self._loop = None
