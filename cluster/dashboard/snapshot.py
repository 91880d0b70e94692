"""One picture of the whole tree, gathered from what the supervisor already knows.

Processes, workers and the autoscaler's last decision come from the
supervisor's own status; the six metrics, health and alerts from the
monitor; queue figures from Redis (one pipelined round per queue); replicas
from one HTTP worker's router view (only the workers hold live pools), at
most every ``REPLICAS_EVERY`` seconds. Rates and state changes are worked
out here by comparing with the previous picture.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import redis.asyncio

from cluster.dashboard import queue_ops
from cluster.dashboard.history import History
from cluster.queues.connection import async_client

if TYPE_CHECKING:
    from cluster.supervisor.core import Supervisor

log = logging.getLogger("cluster.dashboard.snapshot")
REPLICAS_PATH = "/api/enterprise/replicas/status"
REPLICAS_EVERY = 2.0
HOUR = 3600.0


def component(supervisor: "Supervisor", name: str) -> Any:
    return next((c for c in supervisor.components if c.name == name), None)


def rates(previous: dict[str, tuple[float, int, int]], queues: dict[str, dict[str, Any]],
          now: float) -> dict[str, tuple[float, int, int]]:
    """Fill ``processed_per_s``/``enqueued_per_s`` of each queue from its counters; returns the new marks."""
    marks = {}
    for name, row in queues.items():
        mark = (now, row["processed"], row["enqueued"])
        before = previous.get(name)
        if before is not None and now > before[0]:
            span = now - before[0]
            row["processed_per_s"] = round(max(0, mark[1] - before[1]) / span, 2)
            row["enqueued_per_s"] = round(max(0, mark[2] - before[2]) / span, 2)
        else:
            row["processed_per_s"] = row["enqueued_per_s"] = None
        marks[name] = mark
    return marks


def replica_changes(previous: dict[str, str], hosts: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """A state-change event per host whose state differs from the previous view."""
    events = []
    for host in hosts:
        was = previous.get(host["host"])
        if was is not None and was != host["state"]:
            events.append({"at": now, "kind": "replica", "host": host["host"], "from": was, "to": host["state"]})
    return events


def replicas_url(bind: str) -> tuple[str, str | None]:
    """(URL of a worker's replica status, unix socket or None) for the first server bind address."""
    if bind.startswith("unix:"):
        return f"http://localhost{REPLICAS_PATH}", bind[len("unix:"):]
    host, _, port = bind.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host).strip("[]")
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{REPLICAS_PATH}", None


class SnapshotSource:
    """Builds snapshots; keeps what a comparison with the previous one needs."""

    def __init__(self, supervisor: "Supervisor", history: History) -> None:
        self.supervisor = supervisor
        self.history = history
        self.redis: redis.asyncio.Redis | None = None
        self._rate_marks: dict[str, tuple[float, int, int]] = {}
        self._replica_states: dict[str, str] = {}
        self._replicas: dict[str, Any] = {"enabled": False, "hosts": [], "reason": "no database configured"}
        self._replicas_at = 0.0
        self._last_change: Any = None

    async def start(self) -> None:
        url = self.supervisor.settings.redis.url
        if url:
            self.redis = async_client(url, max_connections=8)
            self.history.client, self.history.loaded = self.redis, False

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    async def _queues(self, now: float) -> dict[str, Any]:
        if self.redis is None:
            return {"error": "the queue tier is off", "queues": {}}
        from cluster.queues.admin import QueueAdmin

        try:
            body = await QueueAdmin(self.supervisor.settings, self.redis).status()
            paused = await queue_ops.paused_queues(self.redis)
        except Exception as exc:  # QueueUnavailable or a Redis error: show it, keep the rest of the page
            return {"error": str(exc), "queues": {}}
        for name, row in body.items():
            row["paused"] = paused[name]
        self._rate_marks = rates(self._rate_marks, body, now)
        return {"error": None, "queues": body}

    async def _fetch_replicas(self, now: float) -> None:
        settings = self.supervisor.settings
        if not settings.database.url or now - self._replicas_at < REPLICAS_EVERY:
            return
        self._replicas_at = now
        url, sock = replicas_url(settings.server.bind[0])
        headers = {"Authorization": f"Bearer {settings.admin.token}"} if settings.admin.token else {}
        try:
            connector = aiohttp.UnixConnector(path=sock) if sock else None
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=3)) as s:
                async with s.get(url, headers=headers) as response:
                    body = await response.json(content_type=None)
            if response.status != 200:
                raise ValueError(f"{response.status}: {body}")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self._replicas = {**self._replicas, "error": f"the workers did not answer: {exc}"}
            return
        for event in replica_changes(self._replica_states, body.get("hosts", []), now):
            await self.history.add_event(event)
        self._replica_states = {h["host"]: h["state"] for h in body.get("hosts", [])}
        self._replicas = {**body, "error": None}

    async def watch(self) -> None:
        """Record what must not be missed between snapshots: autoscale changes and replica state changes."""
        now = time.time()
        scaler = component(self.supervisor, "autoscaler")
        change = getattr(scaler, "last_change", None)
        if change is not None and change is not self._last_change:
            self._last_change = change
            await self.history.add_event({"kind": "autoscale", **change})
        await self._fetch_replicas(now)

    async def build(self) -> dict[str, Any]:
        now = time.time()
        sup = self.supervisor
        await self.watch()
        status = sup.status()
        monitor = component(sup, "monitoring")
        last = monitor.last if monitor is not None else {}
        points = self.history.points(now - HOUR)
        window = sup.settings.monitoring.window
        metrics = last.get("metrics", {})
        return {
            "at": now,
            "supervisor": status["supervisor"],
            "health": last.get("health", {}),
            "metrics": metrics,
            "sparks": {m: [p["metrics"].get(m) for p in points] for m in metrics},
            "workers": {**status["workers"], "autoscale": status.get("autoscaler", {})},
            "worker_history": [[p["at"], p["workers"], p["target"], p["min"], p["max"]] for p in points],
            "decisions": [e for e in self.history.events(now - HOUR) if e.get("kind") == "autoscale"],
            "http": {
                "rps": round(last.get("http", {}).get("requests_in_window", 0) / window, 2) if last else None,
                "p95": metrics.get("response_time", {}).get("value"),
                "error_rate": metrics.get("error_rate", {}).get("value"),
            },
            "alerts": monitor.book.snapshot() if monitor is not None else {"active": [], "recent": []},
            "processes": status["processes"],
            "queues": await self._queues(now),
            "replicas": self._replicas,
            "replica_events": [e for e in self.history.events(now - 24 * HOUR) if e.get("kind") == "replica"],
            "read_only": sup.settings.dashboard.read_only,
            "history_backend": self.history.backend,
        }

    @staticmethod
    def point(snapshot: dict[str, Any]) -> dict[str, Any]:
        """The history point of a snapshot."""
        workers = snapshot["workers"]
        return {
            "at": snapshot["at"], "workers": workers["current"], "target": workers["target"],
            "min": workers["min"], "max": workers["max"], "health": snapshot["health"].get("score"),
            "metrics": {m: v.get("value") for m, v in snapshot["metrics"].items()},
            "rps": snapshot["http"]["rps"],
            "depth": {q: r["depth"] for q, r in snapshot["queues"]["queues"].items()},
        }
