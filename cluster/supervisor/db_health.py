"""The database health probes of a whole host: the supervisor probes, its children read the view.

One prober (one connection) per database host for the supervisor, instead of
one per host in every HTTP worker and queue pool process. Each round is
written atomically to ``<state_dir>/db-health.json`` (``db.health_view``); the
routers in the children apply it (``database.health_view`` points them at it).
Same probe, interval and pacing as a router's own loop: the interval +-10 %,
at most a second while a host fails its probe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from cluster.component import Host
from cluster.safe_files import write_file
from cluster.config import Settings
from cluster.db.health_view import VIEW_FILE, encode_round
from cluster.db.hosts import HostSpec, hosts_from_settings
from cluster.db.probe import ProbeResult, Prober
from cluster.db.transitions import next_delay

log = logging.getLogger("cluster.db_health")


def with_view(settings: Settings, state_dir: Path) -> Settings:
    """``settings`` with the children's routers pointed at the view (unchanged without a database)."""
    if not settings.database.url:
        return settings
    return settings.model_copy(update={"database": settings.database.model_copy(
        update={"health_view": str(state_dir / VIEW_FILE)})})


class DbHealth:
    """A supervisor component: probes every database host each round and publishes the results."""

    name = "db-health"

    def __init__(self, host: Host) -> None:
        self.host = host
        self.publisher = secrets.token_hex(8)
        self.seq = 0
        self.specs: list[HostSpec] = []
        self.probers: list[Prober] = []
        self.last: list[ProbeResult] = []
        self.published_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path:
        return self.host.state_dir / VIEW_FILE

    async def start(self) -> None:
        """Probe once and publish before any child starts, then keep probing in the background."""
        settings = self.host.settings
        self.specs = hosts_from_settings(settings)
        if not self.specs:
            return
        self.probers = [Prober(s.url, settings.database.connect_timeout) for s in self.specs]
        await self.publish_round()
        self._task = asyncio.create_task(self._loop(), name="db-health")
        log.info("database health probed by the supervisor", extra={"hosts": [s.name for s in self.specs],
                                                                    "view": str(self.path)})

    async def stop(self) -> None:
        """Stop probing; the file stays and ages, so a child still draining falls back to its own probes."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for prober in self.probers:
            await prober.close()
        self.probers = []

    async def reload(self) -> None:
        """Other database hosts after a reload: probe those, and publish a round for them at once."""
        if hosts_from_settings(self.host.settings) != self.specs:
            await self.stop()
            await self.start()

    async def publish_round(self) -> None:
        """Probe every host at once and replace the view with the results."""
        results = await asyncio.gather(*(p.probe() for p in self.probers))
        at = time.time()
        self.seq += 1
        text = encode_round(self.publisher, self.seq, at, [(s.name, r) for s, r in zip(self.specs, results)])
        write_file(self.path, text, mode=0o600)
        self.last, self.published_at = list(results), at

    async def _loop(self) -> None:
        while True:
            any_down = any(not r.ok for r in self.last)
            interval = self.host.settings.database.health_check_interval
            await asyncio.sleep(next_delay(interval, any_down, random.random()))
            try:
                await self.publish_round()
            except Exception:  # the loop must outlive any single bad round (a full disk, say)
                log.exception("database health round failed")

    def status(self) -> dict[str, Any]:
        return {
            "hosts": [{"host": s.name, "ok": r.ok, "error": r.error} for s, r in zip(self.specs, self.last)],
            "rounds": self.seq,
            "published_at": self.published_at,
        }

    def add_control_routes(self, app: web.Application) -> None:
        """No control route of its own: the view is a file, its status is in `cluster status`."""
