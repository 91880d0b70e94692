"""The workers' monitoring surface: the metrics middleware, the alert endpoints, the health report.

The figures and alerts live in the supervisor; these endpoints read them and
relay the alert actions (acknowledge, silence) over the control socket. The
/api/enterprise/* routes are admin routes (the admin middleware guards them);
``/alerts/ack/{id}`` is the target of the signed one-time links in alert
messages: the signature is its authorization, checked by the supervisor.
/health reports the score, host CPU and alerts (informational: they never
fail it), read at most once per ``SCORE_TTL`` per worker so that it stays
cheap under probes.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any

from aiohttp import web

from cluster.workers import control_client
from cluster.workers.endpoints import HEALTH_CHECKS, SETTINGS_KEY
from cluster.workers.http_metrics import RequestTally, metrics_middleware, publisher
from cluster.workers.middleware import json_error

SCORE_TTL = 2.0
# Informational: a degraded or critical level is a warning to humans, never a failure to serve.
_HEALTH_STATUS = {"excellent": "pass", "good": "pass", "degraded": "warn", "critical": "warn"}
_METRIC_STATUS = {"ok": "pass", "warning": "warn", "critical": "warn"}
_HEX = re.compile(r"^[0-9a-f]{1,128}$")
_LINK_REFUSALS = {403: "The link's signature is not valid.", 404: "This alert is no longer active.",
                  410: "This link was used already: the alert is acknowledged."}


async def _from_supervisor(request: web.Request, method: str, path: str,
                           payload: dict[str, Any] | None = None) -> web.Response:
    state_dir = request.app[SETTINGS_KEY].server.state_dir
    try:
        body = await control_client.call(state_dir, method, path, payload)
    except control_client.ControlError as exc:
        status = exc.status or 503
        return json_error(status, "supervisor unavailable" if exc.status is None else str(exc), detail=str(exc))
    return web.json_response(body)


async def get_metrics(request: web.Request) -> web.Response:
    return await _from_supervisor(request, "GET", "/monitoring")


async def get_alerts(request: web.Request) -> web.Response:
    return await _from_supervisor(request, "GET", "/monitoring/alerts")


def _alert_id(request: web.Request) -> str | None:
    alert_id = request.match_info["alert_id"]
    return alert_id if alert_id.isalnum() and len(alert_id) <= 64 else None


async def ack_alert(request: web.Request) -> web.Response:
    """Acknowledge an alert (the dashboard's action; ``/resolve`` is its older name)."""
    alert_id = _alert_id(request)
    if alert_id is None:
        return json_error(400, "alert id must be alphanumeric (at most 64 characters)")
    return await _from_supervisor(request, "POST", f"/monitoring/alerts/{alert_id}/ack", {"by": "HTTP API"})


async def get_silences(request: web.Request) -> web.Response:
    return await _from_supervisor(request, "GET", "/monitoring/silences")


async def post_silence(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return json_error(400, "body must be JSON: {metric, severity?, duration (s), comment?}")
    if not isinstance(body, dict):
        return json_error(400, "body must be a JSON object")
    return await _from_supervisor(request, "POST", "/monitoring/silences", {**body, "by": "HTTP API"})


async def delete_silence(request: web.Request) -> web.Response:
    silence_id = request.match_info["silence_id"]
    if not silence_id.isalnum() or len(silence_id) > 64:
        return json_error(400, "silence id must be alphanumeric (at most 64 characters)")
    return await _from_supervisor(request, "DELETE", f"/monitoring/silences/{silence_id}")


def _page(status: int, title: str, text: str, form: str = "") -> web.Response:
    body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</body></html>")
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


async def ack_link_page(request: web.Request) -> web.Response:
    """GET of a link in a message: a confirmation button only (mail scanners follow links; they do not POST)."""
    alert_id, sig = _alert_id(request), request.query.get("sig", "")
    if alert_id is None or not _HEX.match(sig):
        return _page(400, "Invalid link", "This acknowledge link is malformed.")
    form = (f"<form method='post' action='{html.escape(request.path)}'>"
            f"<input type='hidden' name='sig' value='{sig}'><button type='submit'>Acknowledge</button></form>")
    return _page(200, "Acknowledge alert", f"Acknowledge alert {alert_id}? Its escalation stops.", form)


async def ack_link(request: web.Request) -> web.Response:
    alert_id = _alert_id(request)
    sig = str((await request.post()).get("sig", ""))
    if alert_id is None or not _HEX.match(sig):
        return _page(400, "Invalid link", "This acknowledge link is malformed.")
    state_dir = request.app[SETTINGS_KEY].server.state_dir
    try:
        await control_client.call(state_dir, "POST", f"/monitoring/alerts/{alert_id}/ack-link", {"signature": sig})
    except control_client.ControlError as exc:
        status = exc.status or 503
        return _page(status, "Not acknowledged", _LINK_REFUSALS.get(status, "The cluster did not answer."))
    return _page(200, "Acknowledged", f"Alert {alert_id} is acknowledged: no more repeats or escalation.")


class ScoreCheck:
    """The health score, host CPU and alerts in /health (informational), cached for ``SCORE_TTL`` seconds."""

    check_name = "health_score"
    informational = True

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def _read(self) -> dict[str, Any]:
        try:
            snapshot = await control_client.call(self.state_dir, "GET", "/monitoring", timeout=2.0)
        except control_client.ControlError as exc:
            return {"status": "warn", "output": f"score unavailable: {exc}"}
        health = snapshot.get("health", {})
        cpu = snapshot.get("metrics", {}).get("cpu", {})
        return {
            "status": _HEALTH_STATUS.get(health.get("level"), "warn"),
            "affectsStatus": False,
            "observedValue": health.get("score"),
            "observedUnit": "score (0-100)",
            "level": health.get("level"),
            "host_cpu": {"status": _METRIC_STATUS.get(cpu.get("state"), "warn"), "observedValue": cpu.get("value"),
                         "observedUnit": "%", "level": cpu.get("state")},
            "alerts": snapshot.get("alerts", {}),
        }

    async def __call__(self) -> tuple[str, dict[str, Any]]:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > SCORE_TTL:
            self._cached = (now, await self._read())
        return self.check_name, self._cached[1]


def install(app: web.Application) -> None:
    """Count every request (outermost middleware) and add the monitoring endpoints and check."""
    tally = RequestTally()
    app.middlewares.insert(0, metrics_middleware(tally))
    app.cleanup_ctx.append(publisher(tally))
    app.router.add_get("/api/enterprise/metrics", get_metrics)
    app.router.add_get("/api/enterprise/alerts", get_alerts)
    app.router.add_post("/api/enterprise/alerts/{alert_id}/ack", ack_alert)
    app.router.add_post("/api/enterprise/alerts/{alert_id}/resolve", ack_alert)
    app.router.add_get("/api/enterprise/alerts/silences", get_silences)
    app.router.add_post("/api/enterprise/alerts/silences", post_silence)
    app.router.add_delete("/api/enterprise/alerts/silences/{silence_id}", delete_silence)
    app.router.add_get("/alerts/ack/{alert_id}", ack_link_page)
    app.router.add_post("/alerts/ack/{alert_id}", ack_link)
    app[HEALTH_CHECKS].append(ScoreCheck(app[SETTINGS_KEY].server.state_dir))
