"""The monitor: a supervisor component that samples the six metrics, alerts, and serves /metrics.

Every ``monitoring.metrics_interval`` it collects the metrics directory (in an
executor: it is file I/O), folds dead processes' files, derives the seed's six
metrics, feeds the alert book and the trends, and hands notifications to the
channels' dispatcher. It serves the Prometheus text on its own listener
(``metrics.bind``) and, with its JSON views, on the control socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import aiohttp
import psutil
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from cluster.monitoring import health_score
from cluster.monitoring.channels import Dispatcher, configured_channels
from cluster.monitoring.alerts import AlertBook, Thresholds
from cluster.monitoring.http_window import HttpWindow, snapshot
from cluster.monitoring.metrics_store import MetricsStore
from cluster.monitoring.trends import trend
from config.monitored import MONITORED

if TYPE_CHECKING:
    from cluster.component import Host

log = logging.getLogger("cluster.monitoring.monitor")
METRICS: dict[str, str] = {m.name: m.unit for m in MONITORED}


def thresholds_of(monitoring: Any) -> dict[str, Thresholds]:
    """The warning/critical pair of each metric from the ``monitoring`` settings section."""
    return {
        m: Thresholds(getattr(monitoring, f"{m}_warning"), getattr(monitoring, f"{m}_critical")) for m in METRICS
    }


def _sample_sum(families: list[Metric], name: str) -> tuple[float | None, dict[str, float]]:
    """The sum of a gauge's samples and its per-``queue`` values; None when no process wrote it."""
    for family in families:
        if family.name == name:
            by_label = {s.labels.get("queue", ""): s.value for s in family.samples}
            return sum(s.value for s in family.samples), by_label
    return None, {}


class Monitor:
    name = "monitoring"

    def __init__(self, host: "Host") -> None:
        self.host = host
        self.store = MetricsStore(host.metrics_dir)
        mon = host.settings.monitoring
        self.book = AlertBook(for_seconds=mon.alert_for, cooldown=mon.alert_cooldown)
        self.window = HttpWindow(mon.window)
        self.history: dict[str, deque[tuple[float, float]]] = {m: deque() for m in METRICS}
        self.last: dict[str, Any] = {}
        self.dispatcher: Dispatcher | None = None
        self.compactions = {"folded_files": 0, "dropped_files": 0, "last_seconds": 0.0}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._listener: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        psutil.cpu_percent(None)  # the first call only primes the counter
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._start_dispatcher()
        await self._start_listener()
        self._task = asyncio.create_task(self._run(), name="monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self._listener is not None:
            await self._listener.cleanup()
        if self._session is not None:
            await self._session.close()

    def _start_dispatcher(self) -> None:
        assert self._session is not None
        cluster = {"host": socket.gethostname(), "state_dir": str(self.host.state_dir)}
        self.dispatcher = Dispatcher(configured_channels(self.host.settings.alerts, self._session), cluster)
        self.dispatcher.start()

    async def reload(self) -> None:
        """Thresholds are read at every tick; timings and channels are taken from the new settings here."""
        mon = self.host.settings.monitoring
        self.book.for_seconds, self.book.cooldown, self.window.window = mon.alert_for, mon.alert_cooldown, mon.window
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        self._start_dispatcher()

    async def _start_listener(self) -> None:
        bind = self.host.settings.metrics.bind
        if not bind:
            return
        app = web.Application()
        app.router.add_get("/metrics", self.handle_metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, _, port = bind.rpartition(":")
        try:
            await web.TCPSite(runner, host.strip("[]"), int(port)).start()
        except OSError as exc:
            # The control socket still serves /metrics: a taken port must not stop the cluster.
            log.error("metrics listener cannot bind %s: %s", bind, exc, extra={"bind": bind})
            await runner.cleanup()
            return
        self._listener = runner
        log.info("metrics listener on %s", bind, extra={"bind": bind})

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("monitor tick failed")
            await asyncio.sleep(self.host.settings.monitoring.metrics_interval)

    # -- one evaluation ----------------------------------------------------------

    def _collect_and_compact(self) -> list[Metric]:
        result = self.store.compact(psutil.pid_exists)
        self.compactions["folded_files"] += result.folded_files
        self.compactions["dropped_files"] += result.dropped_files
        self.compactions["last_seconds"] = round(result.seconds, 4)
        return self.store.collect()

    async def tick(self) -> dict[str, Any]:
        families = await asyncio.get_running_loop().run_in_executor(None, self._collect_and_compact)
        now = time.time()
        figures = self.window.add(snapshot(families, now))
        in_flight, _ = _sample_sum(families, "http_requests_in_flight")
        queue_size, by_queue = _sample_sum(families, "cluster_queue_depth")
        values: dict[str, float | None] = {
            "cpu": psutil.cpu_percent(None),
            "memory": psutil.virtual_memory().percent,
            "response_time": figures.p95_seconds,
            "error_rate": figures.error_rate_percent,
            "concurrent_users": in_flight or 0.0,
            "queue_size": queue_size or 0.0,
        }
        mon = self.host.settings.monitoring
        thresholds = thresholds_of(mon)
        metrics: dict[str, Any] = {}
        for name, value in values.items():
            for note in self.book.evaluate(name, value, thresholds[name], now):
                assert self.dispatcher is not None
                self.dispatcher.publish(note)
            history = self.history[name]
            if value is not None:
                history.append((now, value))
            while history and history[0][0] < now - mon.window:
                history.popleft()
            direction = trend(list(history), mon.window, thresholds[name].warning)
            metrics[name] = {
                "value": None if value is None else round(value, 4),
                "unit": METRICS[name],
                "state": thresholds[name].level(value),
                "trend": direction.direction,
                "change_over_window": round(direction.change_over_window, 4),
                "warning": thresholds[name].warning,
                "critical": thresholds[name].critical,
            }
        score = health_score.score(values, thresholds)
        self.last = {
            "at": now,
            "interval": mon.metrics_interval,
            "window": mon.window,
            "metrics": metrics,
            "health": {"score": score, "level": health_score.level(score)},
            "workers": self.host.scale_status(),
            "queues": {"present": queue_size is not None, "total_depth": queue_size or 0.0, "depth": by_queue},
            "http": {"requests_in_window": figures.requests},
            "alerts": {"active": len(self.book.active),
                       "firing": sum(1 for a in self.book.active.values() if a.state == "firing")},
        }
        return self.last

    # -- surfaces ----------------------------------------------------------------

    def live_families(self) -> list[Metric]:
        """What the supervisor knows and no process writes: per-process CPU/RSS, workers, score."""
        cpu = GaugeMetricFamily("cluster_process_cpu_percent", "CPU of one process, % of one core.",
                                labels=["group", "name"])
        rss = GaugeMetricFamily("cluster_process_resident_memory_bytes", "Resident memory of one process.",
                                labels=["group", "name"])
        host = self.host
        for row in host.process_rows():
            if row.get("cpu_percent") is not None:
                cpu.add_metric([row["group"], row["name"]], row["cpu_percent"])
            if row.get("rss_bytes") is not None:
                rss.add_metric([row["group"], row["name"]], row["rss_bytes"])
        scale = host.scale_status()
        workers = GaugeMetricFamily("cluster_workers", "HTTP workers running.", value=scale["current"])
        target = GaugeMetricFamily("cluster_workers_target", "HTTP workers wanted.", value=scale["target"])
        families: list[Metric] = [cpu, rss, workers, target]
        if self.last:
            metrics = self.last["metrics"]
            families += [
                GaugeMetricFamily("cluster_health_score", "Health score, 0-100.", value=self.last["health"]["score"]),
                GaugeMetricFamily("cluster_host_cpu_percent", "The host's CPU use, %.", value=metrics["cpu"]["value"]),
                GaugeMetricFamily("cluster_host_memory_percent", "The host's memory use, %.",
                                  value=metrics["memory"]["value"]),
            ]
        return families

    async def handle_metrics(self, request: web.Request) -> web.Response:
        live = self.live_families()
        body = await asyncio.get_running_loop().run_in_executor(None, self.store.exposition, live)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_snapshot(self, request: web.Request) -> web.Response:
        if not self.last:
            await self.tick()
        return web.json_response(self.last)

    async def handle_alerts(self, request: web.Request) -> web.Response:
        return web.json_response(self.book.snapshot())

    async def handle_resolve(self, request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        alert = self.book.acknowledge(alert_id)
        if alert is None:
            return web.json_response({"error": f"no active alert {alert_id}", "status": 404}, status=404)
        log.info("alert %s acknowledged", alert_id, extra={"alert": alert.to_dict()})
        return web.json_response(alert.to_dict())

    def add_control_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/monitoring", self.handle_snapshot)
        app.router.add_get("/monitoring/alerts", self.handle_alerts)
        app.router.add_post("/monitoring/alerts/{alert_id}/resolve", self.handle_resolve)

    def status(self) -> dict[str, Any]:
        health = self.last.get("health", {})
        return {
            "health": health,
            "alerts": [
                {k: a[k] for k in ("id", "metric", "severity", "state", "value", "threshold", "acknowledged")}
                for a in self.book.snapshot()["active"]
            ],
            "channels": self.dispatcher.status() if self.dispatcher else {},
            "metrics_files": self.compactions,
            "metrics_bind": self.host.settings.metrics.bind if self._listener else None,
        }
