"""The monitor's HTTP side: /metrics, its JSON views and alert actions on the control socket, and the listener.

``MonitorRoutes`` serves a ``Monitor``'s state: the Prometheus text (with the
supervisor's live gauges), the monitoring snapshot, the alerts and their
actions (ack, signed ack links, silences). ``start_listener`` opens the
supervisor's own listener on ``metrics.bind`` (/metrics and the dashboard),
guarded by the admin check and by header and body timeouts, since it faces
the network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from cluster.json_api import json_body, json_error
from cluster.config.monitored import MONITORED
from cluster.monitoring import ack_links
from cluster.monitoring.alerts import SEVERITIES, AlertBook
from cluster.monitoring.escalation import Escalations
from cluster.monitoring.metrics_store import MetricsStore
from cluster.workers.admin_guard import admin_only
from cluster.workers.middleware import Handler, watch_body

if TYPE_CHECKING:
    from cluster.component import Host

log = logging.getLogger("cluster.monitoring.monitor")

#: Seconds a connection to the supervisor's listener may take to send a request head (server.keepalive unless 0).
HEADER_TIMEOUT = 5.0


def body_deadline(timeout: Callable[[], float]) -> Callable[[web.Request, Handler], Any]:
    """A request body that sends nothing for ``timeout()`` seconds gets 408, as on the workers."""

    @web.middleware
    async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.content.is_eof():
            return await handler(request)
        watchdog = asyncio.create_task(watch_body(request, timeout()))
        try:
            return await handler(request)
        finally:
            watchdog.cancel()

    return deadline


class MonitorState(Protocol):
    """What the handlers read and do of the monitor (``monitor.Monitor``)."""

    host: "Host"
    store: MetricsStore
    book: AlertBook
    escalations: Escalations
    ack_secret: bytes
    last: dict[str, Any]
    loaded: bool
    """The previous run's alerts are back (or could not be loaded)."""

    async def tick(self) -> dict[str, Any]: ...

    async def acknowledge(self, alert_id: str, by: str) -> dict[str, Any] | None: ...

    async def save_state(self) -> None: ...


class MonitorRoutes:
    """The monitor's handlers; ``add_control_routes`` mounts them on the control socket's app."""

    def __init__(self, monitor: MonitorState) -> None:
        self.monitor = monitor

    def live_families(self) -> list[Metric]:
        """What the supervisor knows and no process writes: per-process CPU/RSS, workers, score."""
        cpu = GaugeMetricFamily("cluster_process_cpu_percent", "CPU of one process, % of one core.",
                                labels=["group", "name"])
        rss = GaugeMetricFamily("cluster_process_resident_memory_bytes", "Resident memory of one process.",
                                labels=["group", "name"])
        host, last = self.monitor.host, self.monitor.last
        for row in host.process_rows():
            if row.get("cpu_percent") is not None:
                cpu.add_metric([row["group"], row["name"]], row["cpu_percent"])
            if row.get("rss_bytes") is not None:
                rss.add_metric([row["group"], row["name"]], row["rss_bytes"])
        scale = host.scale_status()
        workers = GaugeMetricFamily("cluster_workers", "HTTP workers running.", value=scale["current"])
        target = GaugeMetricFamily("cluster_workers_target", "HTTP workers wanted.", value=scale["target"])
        families: list[Metric] = [cpu, rss, workers, target]
        if last:
            metrics = last["metrics"]
            families += [
                GaugeMetricFamily("cluster_health_score", "Health score, 0-100.", value=last["health"]["score"]),
                GaugeMetricFamily("cluster_host_cpu_percent", "The host's CPU use, %.", value=metrics["cpu"]["value"]),
                GaugeMetricFamily("cluster_host_memory_percent", "The host's memory use, %.",
                                  value=metrics["memory"]["value"]),
            ]
        return families

    async def handle_metrics(self, request: web.Request) -> web.Response:
        live = self.live_families()
        body = await asyncio.get_running_loop().run_in_executor(None, self.monitor.store.exposition, live)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_snapshot(self, request: web.Request) -> web.Response:
        monitor = self.monitor
        if not monitor.last and monitor.loaded:
            await monitor.tick()
        # Before the previous run's alerts are back, a tick would announce them again under new ids.
        return web.json_response(monitor.last or {"at": None, "starting": True})

    async def handle_alerts(self, request: web.Request) -> web.Response:
        monitor = self.monitor
        return web.json_response({**monitor.book.snapshot(), "escalations": monitor.escalations.durable_state()})

    async def handle_ack(self, request: web.Request) -> web.Response:
        """Acknowledge (CLI, control API, dashboard); ``/resolve`` is the older name of the same action."""
        body = await json_body(request)
        alert = await self.monitor.acknowledge(request.match_info["alert_id"], str(body.get("by") or "control API"))
        if alert is None:
            return json_error(404, f"no active alert {request.match_info['alert_id']}")
        return web.json_response(alert)

    async def handle_ack_link(self, request: web.Request) -> web.Response:
        """A signed link's acknowledgement, relayed by a worker: one use, then it does nothing."""
        alert_id = request.match_info["alert_id"]
        signature = str((await json_body(request)).get("signature", ""))
        if not ack_links.verify(self.monitor.ack_secret, alert_id, signature):
            return json_error(403, "the link's signature is not valid")
        alert = self.monitor.book.active.get(alert_id)
        if alert is None:
            return json_error(404, "this alert is no longer active")
        if alert.acknowledged:
            return json_error(410, f"already acknowledged by {alert.acknowledged_by}")
        return web.json_response(await self.monitor.acknowledge(alert_id, "signed link"))

    async def handle_silences(self, request: web.Request) -> web.Response:
        return web.json_response({"silences": self.monitor.book.snapshot()["silences"]})

    async def handle_silence(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        metric, severity, duration = body.get("metric"), body.get("severity"), body.get("duration")
        names = [m.name for m in MONITORED]
        if metric not in names:
            return json_error(400, f"metric must be one of {', '.join(names)}")
        if severity not in (None, *SEVERITIES):
            return json_error(400, "severity must be warning, critical or absent (both)")
        if not isinstance(duration, (int, float)) or duration <= 0:
            return json_error(400, "duration must be a positive number of seconds")
        silence = self.monitor.book.silence(metric, severity, float(duration), time.time(),
                                            str(body.get("comment") or ""), str(body.get("by") or "control API"))
        log.info("alerts of %s silenced for %ss", metric, duration, extra={"silence": silence.to_dict()})
        await self.monitor.save_state()
        return web.json_response(silence.to_dict())

    async def handle_unsilence(self, request: web.Request) -> web.Response:
        silence = self.monitor.book.unsilence(request.match_info["silence_id"])
        if silence is None:
            return json_error(404, f"no silence {request.match_info['silence_id']}")
        log.info("silence %s removed", silence.id, extra={"silence": silence.to_dict()})
        await self.monitor.save_state()
        return web.json_response(silence.to_dict())

    def add_control_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/monitoring", self.handle_snapshot)
        app.router.add_get("/monitoring/alerts", self.handle_alerts)
        app.router.add_post("/monitoring/alerts/{alert_id}/ack", self.handle_ack)
        app.router.add_post("/monitoring/alerts/{alert_id}/resolve", self.handle_ack)
        app.router.add_post("/monitoring/alerts/{alert_id}/ack-link", self.handle_ack_link)
        app.router.add_get("/monitoring/silences", self.handle_silences)
        app.router.add_post("/monitoring/silences", self.handle_silence)
        app.router.add_delete("/monitoring/silences/{silence_id}", self.handle_unsilence)

    async def start_listener(self, listener_routes: Sequence[Callable[[web.Application], None]]) -> web.AppRunner | None:
        """The supervisor's listener on ``metrics.bind`` (/metrics, and the dashboard's pages through
        ``listener_routes``); None when no bind is set or the address cannot be bound."""
        host = self.monitor.host  # its settings are read per request: a reload replaces them
        bind = host.settings.metrics.bind
        if not bind:
            return None
        # The dashboard's pages guard themselves (login form, sessions, CSRF, the same admin check).
        app = web.Application(middlewares=[body_deadline(lambda: host.settings.server.body_timeout),
                                           admin_only(lambda: host.settings, exempt=("/dashboard",))])
        app.router.add_get("/metrics", self.handle_metrics)
        for add_routes in listener_routes:  # the dashboard serves its pages here
            add_routes(app)
        # keepalive_timeout also bounds a new connection's wait for a whole request head (aiohttp arms it
        # at connect): a client trickling its headers cannot hold the supervisor's sockets for long.
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               keepalive_timeout=host.settings.server.keepalive or HEADER_TIMEOUT)
        await runner.setup()
        address, _, port = bind.rpartition(":")
        try:
            await web.TCPSite(runner, address.strip("[]"), int(port)).start()
        except OSError as exc:
            # The control socket still serves /metrics: a taken port must not stop the cluster.
            log.error("metrics listener cannot bind %s: %s", bind, exc, extra={"bind": bind})
            await runner.cleanup()
            return None
        log.info("metrics listener on %s", bind, extra={"bind": bind})
        return runner
