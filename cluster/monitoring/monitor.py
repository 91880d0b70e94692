"""The monitor: a supervisor component that samples the six metrics, alerts, and serves /metrics.

Every ``monitoring.metrics_interval`` it collects the metrics directory (in an
executor: it is file I/O), folds dead processes' files, derives the six monitored
metrics, feeds the alert book and the trends, runs the escalations, and hands
notifications to the channels' dispatcher. The alerts' durable state (firing
alerts, silences, escalations) is saved to the alert store when it changes.
Its HTTP side (the Prometheus text on its own listener, ``metrics.bind``, and
with the JSON views and the alert actions on the control socket) is
``http_routes.MonitorRoutes``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import aiohttp
import psutil
from aiohttp import web
from prometheus_client.metrics_core import Metric

from cluster.config.monitored import MONITORED
from cluster.monitoring import ack_links, health_score
from cluster.monitoring.alert_store import AlertStore, store_for
from cluster.monitoring.alerts import AlertBook, Lifecycle, Notification, Thresholds
from cluster.monitoring.channels import Dispatcher, configured_channels
from cluster.monitoring.escalation import Escalations
from cluster.monitoring.http_routes import MonitorRoutes
from cluster.monitoring.http_window import HttpWindow, snapshot
from cluster.monitoring.metrics_store import MetricsStore
from cluster.monitoring.trends import trend

if TYPE_CHECKING:
    from cluster.component import Host

log = logging.getLogger("cluster.monitoring.monitor")
STORE_LOAD_ATTEMPTS = 20
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

    def __init__(self, host: "Host", listener_routes: Sequence[Callable[[web.Application], None]] = ()) -> None:
        self.host = host
        self.listener_routes = list(listener_routes)
        self.store = MetricsStore(host.metrics_dir)
        mon = host.settings.monitoring
        self.book = AlertBook(Lifecycle.from_settings(mon), started=time.time())
        self.escalations = Escalations(host.settings.alerts.escalation)
        self.ack_secret = b""
        self.alert_store: AlertStore | None = None
        self._saved = ""
        self.loaded = False
        self.window = HttpWindow(mon.window)
        self.history: dict[str, deque[tuple[float, float]]] = {m: deque() for m in METRICS}
        self.last: dict[str, Any] = {}
        self.dispatcher: Dispatcher | None = None
        self.compactions = {"folded_files": 0, "dropped_files": 0, "last_seconds": 0.0}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._listener: web.AppRunner | None = None
        self.routes = MonitorRoutes(self)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        psutil.cpu_percent(None)  # the first call only primes the counter
        alerts = self.host.settings.alerts
        self.ack_secret = ack_links.install_secret(self.host.state_dir, alerts.ack_secret)
        self.alert_store = store_for(self.host.settings.redis.url, str(self.host.state_dir))
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._start_dispatcher()
        self._listener = await self.routes.start_listener(self.listener_routes)
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
        if self.alert_store is not None:
            await self.save_state()
            await self.alert_store.close()

    def _start_dispatcher(self) -> None:
        assert self._session is not None
        alerts = self.host.settings.alerts
        cluster = {"host": socket.gethostname(), "state_dir": str(self.host.state_dir)}
        self.dispatcher = Dispatcher(configured_channels(alerts, self._session), cluster, alerts.group_wait,
                                     self.ack_link)
        self.dispatcher.start()

    def ack_link(self, alert_id: str) -> str | None:
        base = self.host.settings.alerts.ack_base_url
        return ack_links.link(base, self.ack_secret, alert_id) if base else None

    async def reload(self) -> None:
        """Thresholds are read at every tick; timings, policies and channels are taken from the new settings here."""
        mon = self.host.settings.monitoring
        self.book.lifecycle, self.window.window = Lifecycle.from_settings(mon), mon.window
        self.escalations.policies = self.host.settings.alerts.escalation
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        self._start_dispatcher()

    async def _load_state(self) -> None:
        """Take back the alerts, silences and escalations of the previous run (Redis may still be starting)."""
        assert self.alert_store is not None
        state = None
        for attempt in range(1, STORE_LOAD_ATTEMPTS + 1):
            try:
                state = await self.alert_store.load()
                break
            except Exception as exc:  # redis-py raises many types; none may stop the monitor
                if attempt == STORE_LOAD_ATTEMPTS:
                    log.error("cannot load the alert state from %s: %s", self.alert_store.where, exc)
                await asyncio.sleep(0.5)
        if state:
            self.book.restore(state.get("book", {}))
            self.escalations.restore(state.get("escalations", []))
            log.info("alert state restored from %s", self.alert_store.where,
                     extra={"alerts": len(self.book.active), "escalations": len(self.escalations.running)})
        self.loaded = True

    async def save_state(self) -> None:
        """Write the durable state when it changed since the last write."""
        assert self.alert_store is not None
        state = {"book": self.book.durable_state(), "escalations": self.escalations.durable_state()}
        encoded = json.dumps(state, sort_keys=True)
        if encoded != self._saved:
            await self.alert_store.save(state)
            self._saved = encoded

    async def _run(self) -> None:
        await self._load_state()
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
                self._publish(self._route(note, now))
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
        self._escalate(now)
        await self.save_state()
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

    # -- alert routing -------------------------------------------------------------

    def _publish(self, note: Notification) -> None:
        assert self.dispatcher is not None
        self.dispatcher.publish(note)

    def _route(self, note: Notification, now: float) -> Notification:
        """Send a firing alert to step 1 of its escalation; repeats and resolution where the escalation reached."""
        alert_id = note.alert["id"]
        if note.kind == "firing":
            channels = self.escalations.start(alert_id, note.alert["severity"], now)
        else:
            channels = self.escalations.channels_of(alert_id)
        if note.kind == "resolved":
            self._stop_escalation(alert_id, "resolved")
        return replace(note, channels=channels)

    def _stop_escalation(self, alert_id: str, reason: str) -> None:
        esc = self.escalations.stop(alert_id, reason)
        if esc is not None:
            log.info("escalation of alert %s stopped: %s", alert_id, reason,
                     extra={"alert_id": alert_id, "reason": reason, "steps": esc.history})

    def _escalate(self, now: float) -> None:
        for due in self.escalations.due(now):
            alert = self.book.active.get(due.alert_id)
            if alert is None or alert.acknowledged:
                self._stop_escalation(due.alert_id, "resolved" if alert is None else "acknowledged")
                continue
            if alert.inhibited or alert.silenced:
                continue
            log.info("alert %s escalates: step %d to %s", alert.id, due.step, ", ".join(due.channels),
                     extra={"alert_id": alert.id, "step": due.step, "channels": list(due.channels)})
            self._publish(Notification("escalation", alert.to_dict(), due.channels, due.step))
        self.escalations.forget(set(self.book.active))

    async def acknowledge(self, alert_id: str, by: str) -> dict[str, Any] | None:
        """Acknowledge an active alert: no more repeats, its escalation stops. None when it is not active."""
        alert = self.book.acknowledge(alert_id, by, time.time())
        if alert is None:
            return None
        self._stop_escalation(alert_id, "acknowledged")
        log.info("alert %s acknowledged by %s", alert_id, alert.acknowledged_by, extra={"alert": alert.to_dict()})
        await self.save_state()
        return alert.to_dict()

    # -- surfaces ----------------------------------------------------------------

    def add_control_routes(self, app: web.Application) -> None:
        self.routes.add_control_routes(app)

    def status(self) -> dict[str, Any]:
        health = self.last.get("health", {})
        return {
            "health": health,
            "alerts": [
                {k: a[k] for k in ("id", "metric", "severity", "state", "value", "threshold", "acknowledged",
                                   "inhibited", "silenced")}
                for a in self.book.snapshot()["active"]
            ],
            "silences": len(self.book.silences),
            "escalations": [e.to_dict() for e in self.escalations.running.values() if e.stopped is None],
            "alert_store": self.alert_store.where if self.alert_store else None,
            "channels": self.dispatcher.status() if self.dispatcher else {},
            "metrics_files": self.compactions,
            "metrics_bind": self.host.settings.metrics.bind if self._listener else None,
        }

