"""The alert state machine (pure): thresholds, pending, firing, repeats, escalation, resolution.

One alert per metric and severity, identified by the fingerprint of its labels
(``alertname``, ``severity``), as Alertmanager does. For each evaluation of a
metric's value:

- a condition that starts is *pending*; it *fires* (one notification) once it
  has held for ``for_seconds``;
- a firing alert is notified again no sooner than ``cooldown`` after its last
  notification, unless an operator acknowledged it;
- warning -> critical escalates at once: the critical alert of a metric whose
  warning is already firing skips the ``for`` wait;
- a firing critical suppresses the warning of the same metric (inhibition):
  the warning is not notified while the critical fires; if the critical clears
  and the warning condition remains, the warning is notified again;
- a condition that clears resolves its alert; a "resolved" notification goes
  out for every alert whose firing was notified. A pending alert that clears
  before firing disappears silently.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["warning", "critical"]
Level = Literal["ok", "warning", "critical"]
NotificationKind = Literal["firing", "repeat", "resolved"]


@dataclass(frozen=True)
class Thresholds:
    warning: float
    critical: float

    def level(self, value: float | None) -> Level:
        """The state of a value: critical at or above critical, warning at or above warning."""
        if value is None:
            return "ok"
        if value >= self.critical:
            return "critical"
        if value >= self.warning:
            return "warning"
        return "ok"

    def of(self, severity: Severity) -> float:
        return self.critical if severity == "critical" else self.warning


def fingerprint(labels: dict[str, str]) -> str:
    """A stable id of a label set (16 hex characters)."""
    encoded = json.dumps(labels, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


@dataclass
class Alert:
    id: str
    metric: str
    severity: Severity
    threshold: float
    value: float | None
    since: float
    state: Literal["pending", "firing", "suppressed", "resolved"] = "pending"
    fired_at: float | None = None
    last_notified: float | None = None
    notified: bool = False
    notifications: int = 0
    acknowledged: bool = False
    resolved_at: float | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {"alertname": self.metric, "severity": self.severity}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "labels": self.labels}


@dataclass(frozen=True)
class Notification:
    kind: NotificationKind
    alert: dict[str, Any]

    @property
    def summary(self) -> str:
        a = self.alert
        if self.kind == "resolved":
            return f"RESOLVED {a['severity']}: {a['metric']} is back below {a['threshold']:g} (now {_fmt(a['value'])})"
        return f"{a['severity'].upper()}: {a['metric']} is {_fmt(a['value'])}, threshold {a['threshold']:g}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


@dataclass
class AlertBook:
    """Every active alert and the recently resolved ones; ``evaluate`` returns what to notify."""

    for_seconds: float
    cooldown: float
    recent_limit: int = 100
    active: dict[str, Alert] = field(default_factory=dict)
    recent: deque[Alert] = field(default_factory=deque)

    def _get(self, metric: str, severity: Severity, thresholds: Thresholds, now: float) -> Alert:
        fid = fingerprint({"alertname": metric, "severity": severity})
        alert = self.active.get(fid)
        if alert is None:
            alert = self.active[fid] = Alert(fid, metric, severity, thresholds.of(severity), None, now)
        return alert

    def _find(self, metric: str, severity: Severity) -> Alert | None:
        return self.active.get(fingerprint({"alertname": metric, "severity": severity}))

    def _notify(self, alert: Alert, kind: NotificationKind, now: float) -> Notification:
        alert.last_notified = now
        alert.notifications += 1
        if kind != "resolved":
            alert.notified = True
        return Notification(kind, alert.to_dict())

    def _fire(self, alert: Alert, now: float) -> Notification:
        alert.state = "firing"
        alert.fired_at = alert.fired_at or now
        return self._notify(alert, "firing", now)

    def _resolve(self, alert: Alert, now: float) -> Notification | None:
        del self.active[alert.id]
        was_notified = alert.notified and alert.state in ("firing", "suppressed")
        alert.state = "resolved"
        alert.resolved_at = now
        self.recent.appendleft(alert)
        while len(self.recent) > self.recent_limit:
            self.recent.pop()
        return self._notify(alert, "resolved", now) if was_notified else None

    def _repeat_due(self, alert: Alert, now: float) -> bool:
        return (
            not alert.acknowledged
            and alert.last_notified is not None
            and now - alert.last_notified >= self.cooldown
        )

    def evaluate(self, metric: str, value: float | None, thresholds: Thresholds, now: float) -> list[Notification]:
        """Advance the metric's alerts with one observation; the notifications to send, in order."""
        level = thresholds.level(value)
        out: list[Notification] = []

        warning = self._find(metric, "warning")
        critical = self._find(metric, "critical")
        if level == "critical":
            critical = self._get(metric, "critical", thresholds, now)
            critical.value = value
            escalated = warning is not None and warning.state in ("firing", "suppressed")
            if critical.state == "pending" and (escalated or now - critical.since >= self.for_seconds):
                out.append(self._fire(critical, now))
            elif critical.state == "firing" and self._repeat_due(critical, now):
                out.append(self._notify(critical, "repeat", now))
        elif critical is not None:
            note = self._resolve(critical, now)
            critical = None
            if note:
                out.append(note)

        if level in ("warning", "critical"):
            warning = self._get(metric, "warning", thresholds, now)
            warning.value = value
            inhibited = critical is not None and critical.state == "firing"
            held = now - warning.since >= self.for_seconds
            if inhibited:
                if warning.state == "firing" or (warning.state == "pending" and held):
                    warning.state = "suppressed"
            elif warning.state == "suppressed" or (warning.state == "pending" and held):
                out.append(self._fire(warning, now))
            elif warning.state == "firing" and self._repeat_due(warning, now):
                out.append(self._notify(warning, "repeat", now))
        elif warning is not None:
            note = self._resolve(warning, now)
            if note:
                out.append(note)
        return out

    def acknowledge(self, alert_id: str) -> Alert | None:
        """An operator has seen it: no more repeats until it resolves. None when not active."""
        alert = self.active.get(alert_id)
        if alert is not None:
            alert.acknowledged = True
        return alert

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "active": [a.to_dict() for a in self.active.values()],
            "recent": [a.to_dict() for a in self.recent],
        }
