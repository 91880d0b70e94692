"""The dashboard as a supervisor component: the producer, the history sampler, and where its routes go."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cluster.dashboard import control_routes, render
from cluster.dashboard.history import History
from cluster.dashboard.producer import Producer
from cluster.dashboard.snapshot import SnapshotSource
from cluster.dashboard.web import DashboardWeb

if TYPE_CHECKING:
    from cluster.supervisor.core import Supervisor

log = logging.getLogger("cluster.dashboard")
WATCH_EVERY = 1.0


class Dashboard:
    name = "dashboard"

    def __init__(self, supervisor: "Supervisor") -> None:
        self.supervisor = supervisor
        self.history = History(supervisor.settings.dashboard.history_points)
        self.source = SnapshotSource(supervisor, self.history)
        self.producer = Producer(self.source.build, render.live)
        self.web = DashboardWeb(self)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.source.start()
        self._tasks = [asyncio.create_task(self.producer.run(), name="dashboard-producer"),
                       asyncio.create_task(self._sample(), name="dashboard-history")]

    async def stop(self) -> None:
        self.producer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.source.close()

    async def reload(self) -> None:
        """Nothing to redo: the pages read the supervisor's settings as they are at each request."""

    async def _sample(self) -> None:
        """Watch for autoscale and replica changes every second; a history point every ``history_step``."""
        last_point = 0.0
        while True:
            try:
                now = time.time()
                if now - last_point >= self.supervisor.settings.dashboard.history_step:
                    last_point = now
                    latest = self.producer.latest
                    snapshot = latest if latest and now - latest["at"] < 2 else await self.source.build()
                    await self.history.add_point(self.source.point(snapshot))
                else:
                    await self.source.watch()
            except Exception:
                log.exception("dashboard history sample failed")
            await asyncio.sleep(WATCH_EVERY)

    def add_listener_routes(self, app: web.Application) -> None:
        """The pages, on the supervisor's metrics listener."""
        if self.supervisor.settings.dashboard.enabled:
            self.web.add_routes(app)

    def add_control_routes(self, app: web.Application) -> None:
        control_routes.add(app, self.supervisor)

    def status(self) -> dict[str, Any]:
        return {
            "enabled": self.supervisor.settings.dashboard.enabled,
            "read_only": self.supervisor.settings.dashboard.read_only,
            "listeners": self.producer.listeners,
            "snapshots_built": self.producer.builds,
            "history": self.history.backend,
        }
