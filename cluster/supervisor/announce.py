"""Keeps systemd told what the supervisor is doing, from the supervisor's own event loop.

- start: EXTEND_TIMEOUT_USEC= while the tier boots (bounded), then READY=1
  once every group serves: the wanted HTTP workers run, every other child
  (queue pools, redis) runs, and /readyz answers 200 on the bound port;
- STATUS= kept current ("8/8 http, 10/10 queue, health 97, 2 alerts");
- reload: RELOADING=1 with MONOTONIC_USEC=, and READY=1 only once the new
  generation serves (no worker of the old one left, the count back, /readyz);
- stop: STOPPING=1;
- WATCHDOG=1 every WATCHDOG_USEC/2. The pings come from a task of the
  supervisor's loop, so a loop that hangs stops them and systemd restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import psutil

from cluster.config.urls import bind_url
from cluster.supervisor.commands import Heartbeat, MarkReady
from cluster.supervisor.sd_notify import Notifier, status_line, watchdog_interval
from cluster.workers.control_client import socket_path

if TYPE_CHECKING:
    from cluster.supervisor.children import SupervisedChild
    from cluster.supervisor.commands import Command
    from cluster.supervisor.http_workers import HttpWorkers
    from cluster.config import Settings


class Announced(Protocol):
    """What the announcer reads of the supervisor, and the one request it makes (through the command loop)."""

    children: dict[str, "SupervisedChild"]
    components: list[Any]
    state_dir: Path
    http_workers: "HttpWorkers"

    @property
    def settings(self) -> "Settings": ...

    @property
    def worker_target(self) -> int: ...

    @property
    def http_child(self) -> "SupervisedChild": ...

    def submit(self, command: "Command") -> "asyncio.Future[Any]": ...

log = logging.getLogger("cluster.supervisor.announce")
POLL = 0.2
STATUS_EVERY = 2.0
# While booting, each EXTEND_TIMEOUT_USEC grants this much more, and is sent
# every EXTEND_EVERY; extensions stop after boot_grace x EXTEND_LIMIT so a
# start that never completes still hits systemd's timeout.
EXTEND_BY = 15.0
EXTEND_EVERY = 5.0
EXTEND_LIMIT = 3


async def readyz(bind: str, timeout: float) -> bool:
    """GET /readyz on the bound address answers 200."""
    url, unix = bind_url(bind, "/readyz")
    connector = aiohttp.UnixConnector(path=unix) if unix else aiohttp.TCPConnector(force_close=True)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, headers={"X-Request-ID": "supervisor-ready-probe"}) as response:
                return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


def _arbiter_children(pid: int | None) -> set[int]:
    """The arbiter's workers now (read here, not through HttpWorkers: its CPU windows stay intact)."""
    if pid is None:
        return set()
    try:
        return {p.pid for p in psutil.Process(pid).children()}
    except psutil.NoSuchProcess:
        return set()


def _children_up(supervisor: Announced, group_prefix: str = "") -> tuple[int, int]:
    """(running, supervised) children other than the arbiter, of groups starting with ``group_prefix``."""
    rows = [c for name, c in supervisor.children.items()
            if name != "http" and c.spec.group.startswith(group_prefix)]
    return sum(1 for c in rows if c.pid is not None), len(rows)


def addresses(settings: "Settings", state_dir: Path) -> dict[str, Any]:
    """Pure: where everything is served, and how an admin client from another host gets in."""
    metrics = bind_url(settings.metrics.bind, "")[0] if settings.metrics.bind else None
    return {
        "app": [bind_url(bind, "/")[0] + (f" ({bind})" if bind.startswith("unix:") else "")
                for bind in settings.server.bind],
        "dashboard": f"{metrics}/dashboard/" if metrics and settings.dashboard.enabled else None,
        "metrics": f"{metrics}/metrics" if metrics else None,
        "control": str(socket_path(state_dir)),
        "remote_admin": ("send Authorization: Bearer <admin.token>, or log in to the dashboard with it"
                         if settings.admin.token else
                         "none until CLUSTER_ADMIN_TOKEN is set; then send Authorization: Bearer <token>, "
                         "or log in to the dashboard with it"),
    }


def ready_line(where: dict[str, Any]) -> str:
    """Pure: the one line that says the cluster serves, and where (never the token itself)."""
    return " · ".join([
        f"cluster ready: app {', '.join(where['app'])}",
        f"dashboard {where['dashboard'] or 'off'}",
        f"metrics {where['metrics'] or 'off (metrics.bind is empty)'}",
        f"control socket {where['control']}",
        f"remote admin: {where['remote_admin']}",
    ])


class SystemdAnnouncer:
    """The supervisor's side of Type=notify (a no-op outside systemd, except for setting ``ready``)."""

    def __init__(self, supervisor: Announced, notifier: Notifier | None = None) -> None:
        self.supervisor = supervisor
        self.notifier = notifier or Notifier()
        self.watchdog_every = watchdog_interval(os.environ, os.getpid())
        self._waiter: asyncio.Task[None] | None = None

    async def serving(self, old_pids: Iterable[int] = ()) -> bool:
        """Every group serves; no HTTP worker of ``old_pids`` (the previous generation) is left."""
        sup = self.supervisor
        pids = _arbiter_children(sup.http_child.pid)
        if len(pids) < sup.worker_target or pids & set(old_pids):
            return False
        if len(sup.http_workers.last) < sup.worker_target:  # what `cluster status` shows has caught up too
            return False
        up, total = _children_up(sup)
        if up < total:
            return False
        return await readyz(sup.settings.server.bind[0], sup.settings.health.timeout)

    def status_text(self) -> str:
        sup = self.supervisor
        queue = _children_up(sup, "queue-")
        monitor = next((c for c in sup.components if c.name == "monitoring"), None)
        last: dict[str, Any] = getattr(monitor, "last", None) or {}
        health = last.get("health", {}).get("score")
        alerts = last.get("alerts", {}).get("firing")
        return status_line((len(sup.http_workers.last), sup.worker_target), queue if queue[1] else None,
                           health, alerts)

    async def _until_serving(self, old_pids: Iterable[int] = (), extend: bool = False) -> None:
        """Until every group serves; with ``extend``, EXTEND_TIMEOUT_USEC on a timer meanwhile (a /readyz probe
        can wait on a booting worker for as long as the boot takes, so the timer must not depend on it)."""
        old = set(old_pids)
        extender = asyncio.create_task(self._extend_while_booting(), name="sd-extend") if extend else None
        try:
            while not await self.serving(old):
                await asyncio.sleep(POLL)
        finally:
            if extender is not None:
                extender.cancel()

    async def _extend_while_booting(self) -> None:
        """EXTEND_TIMEOUT_USEC every EXTEND_EVERY, for at most boot_grace x EXTEND_LIMIT."""
        deadline = time.monotonic() + self.supervisor.settings.server.boot_grace * EXTEND_LIMIT
        while True:
            await asyncio.sleep(EXTEND_EVERY)
            if time.monotonic() >= deadline:
                return
            self.notifier.extend_timeout(EXTEND_BY)

    async def run(self) -> None:
        """READY=1 once serving, then STATUS= and WATCHDOG=1 until cancelled."""
        if self.watchdog_every:
            # The pings start at once: a slow boot must not trip the watchdog.
            watchdog = asyncio.create_task(self._watchdog(), name="sd-watchdog")
        try:
            await self._until_serving(extend=True)
            await self.supervisor.submit(MarkReady())
            while True:
                await asyncio.sleep(STATUS_EVERY)
                if self._waiter is None or self._waiter.done():
                    self.notifier.status(self.status_text())
        finally:
            if self.watchdog_every:
                watchdog.cancel()

    def announce_ready(self) -> None:
        """READY=1 with the current status, and the ready line (the command loop marks the supervisor ready,
        then calls this)."""
        self.notifier.ready(self.status_text())
        sup = self.supervisor
        where = addresses(sup.settings, sup.state_dir)
        log.info(ready_line(where), extra={"workers": len(sup.http_workers.last), "bind": sup.settings.server.bind,
                                           **{k: v for k, v in where.items() if k != "remote_admin"}})

    async def _watchdog(self) -> None:
        """A ping each time the command loop answers a heartbeat: a hung loop stops the pings."""
        assert self.watchdog_every is not None
        log.info("systemd watchdog: pinging every %.1fs", self.watchdog_every)
        while True:
            await self.supervisor.submit(Heartbeat())
            self.notifier.watchdog()
            await asyncio.sleep(self.watchdog_every)

    def reloading(self) -> set[int]:
        """RELOADING=1; returns the pids of the generation being replaced."""
        self.notifier.reloading()
        return {s.pid for s in self.supervisor.http_workers.last}

    def reload_refused(self) -> None:
        self.notifier.ready(self.status_text())

    def reloaded(self, old_pids: set[int]) -> None:
        """READY=1 once the new generation serves (in the background: the caller returns now)."""
        if self._waiter is not None:
            self._waiter.cancel()
        self._waiter = asyncio.create_task(self._ready_after_reload(old_pids), name="sd-reload")

    async def _ready_after_reload(self, old_pids: set[int]) -> None:
        await self._until_serving(old_pids)
        self.notifier.ready(self.status_text())
        log.info("reload complete: the new generation serves", extra={"workers": len(self.supervisor.http_workers.last)})

    def stopping(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()
        self.notifier.stopping()
