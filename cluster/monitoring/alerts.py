"""The alert state machine (pure): pending, firing, hysteresis, repeats, inhibition, silences.

Nothing here reads a clock or does I/O: ``AlertBook.evaluate`` takes one
sample of one metric and the time, and returns the notifications to send.
For each metric and severity, as Prometheus rules and Alertmanager do:

- nothing starts counting during the start-up grace (``grace`` seconds after
  the book's ``started``): the start-up itself is load, not an incident;
- a value at or above the threshold makes the alert *pending*; it *fires*
  once the condition has held for ``for`` (per severity); a pending alert
  whose value drops below the threshold disappears silently;
- a firing alert is *clear* while its value is below the resolve threshold,
  the threshold less ``hysteresis`` (a fraction of it); it resolves once it
  has been clear for ``clear_for``. A value that oscillates around the
  threshold within that band therefore never flaps. The resolved
  notification carries the value at the moment of resolution;
- a firing alert is announced once per episode ("firing") and then repeated
  no sooner than its severity's repeat interval, unless acknowledged;
- a firing critical inhibits the warning of the same metric: the warning is
  neither announced nor repeated while the critical fires;
- a silence that matches an alert withholds its notifications while it lasts;
  an alert still firing when its silence ends is announced then.

Each episode gets a random id (alerts are found by metric and severity), so an
id can be neither guessed from labels nor reused by a later episode.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Severity = Literal["warning", "critical"]
Level = Literal["ok", "warning", "critical"]
NotificationKind = Literal["firing", "repeat", "escalation", "resolved"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning")


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


@dataclass(frozen=True)
class Lifecycle:
    """The timings of the state machine (seconds) and the hysteresis fraction."""

    for_warning: float = 60.0
    for_critical: float = 30.0
    clear_for: float = 60.0
    hysteresis: float = 0.1
    repeat_warning: float = 14400.0
    repeat_critical: float = 3600.0
    grace: float = 60.0

    @classmethod
    def from_settings(cls, monitoring: Any) -> "Lifecycle":
        """From the ``monitoring`` section; ``alert_for``/``alert_cooldown``, when set, apply to both severities."""
        same_for, same_repeat = monitoring.alert_for, monitoring.alert_cooldown
        return cls(
            for_warning=monitoring.alert_for_warning if same_for is None else same_for,
            for_critical=monitoring.alert_for_critical if same_for is None else same_for,
            clear_for=monitoring.alert_clear_for,
            hysteresis=monitoring.alert_hysteresis,
            repeat_warning=monitoring.repeat_interval_warning if same_repeat is None else same_repeat,
            repeat_critical=monitoring.repeat_interval_critical if same_repeat is None else same_repeat,
            grace=monitoring.startup_grace,
        )

    def for_seconds(self, severity: Severity) -> float:
        return self.for_critical if severity == "critical" else self.for_warning

    def repeat(self, severity: Severity) -> float:
        return self.repeat_critical if severity == "critical" else self.repeat_warning


def new_alert_id() -> str:
    """A random, unguessable alert id (32 hex characters)."""
    return secrets.token_hex(16)


@dataclass
class Alert:
    id: str
    metric: str
    severity: Severity
    threshold: float
    resolve_below: float
    value: float | None
    since: float
    state: Literal["pending", "firing", "resolved"] = "pending"
    fired_at: float | None = None
    clear_since: float | None = None
    announced: bool = False
    last_notified: float | None = None
    notifications: int = 0
    inhibited: bool = False
    silenced: bool = False
    acknowledged: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    resolved_at: float | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {"alertname": self.metric, "severity": self.severity}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "labels": self.labels}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Alert":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Silence:
    """Withholds the notifications of a metric's alerts (one severity, or both) until ``ends``."""

    id: str
    metric: str
    severity: Severity | None
    starts: float
    ends: float
    comment: str = ""
    created_by: str = ""

    def matches(self, alert: Alert, now: float) -> bool:
        return (self.starts <= now < self.ends and self.metric == alert.metric
                and self.severity in (None, alert.severity))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Notification:
    kind: NotificationKind
    alert: dict[str, Any]
    channels: tuple[str, ...] | None = None  # None: every configured channel
    step: int | None = None

    @property
    def summary(self) -> str:
        a = self.alert
        if self.kind == "resolved":
            return (f"RESOLVED {a['severity']}: {a['metric']} is {_fmt(a['value'])}, "
                    f"below {a['resolve_below']:g} (threshold {a['threshold']:g})")
        tag = {"firing": "", "repeat": " (still firing)", "escalation": f" (escalation step {self.step})"}[self.kind]
        return f"{a['severity'].upper()}{tag}: {a['metric']} is {_fmt(a['value'])}, threshold {a['threshold']:g}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


@dataclass
class AlertBook:
    """Every active alert, the silences and the recently resolved alerts; ``evaluate`` says what to notify."""

    lifecycle: Lifecycle
    started: float
    new_id: Callable[[], str] = new_alert_id
    recent_limit: int = 100
    active: dict[str, Alert] = field(default_factory=dict)
    silences: dict[str, Silence] = field(default_factory=dict)
    recent: deque[Alert] = field(default_factory=deque)

    def find(self, metric: str, severity: Severity) -> Alert | None:
        return next((a for a in self.active.values() if a.metric == metric and a.severity == severity), None)

    def _notify(self, alert: Alert, kind: NotificationKind, now: float) -> Notification:
        alert.notifications += 1
        if kind != "resolved":
            alert.last_notified = now
            alert.announced = True
        return Notification(kind, alert.to_dict())

    def _retire(self, alert: Alert, now: float) -> None:
        del self.active[alert.id]
        alert.state = "resolved"
        alert.resolved_at = now
        self.recent.appendleft(alert)
        while len(self.recent) > self.recent_limit:
            self.recent.pop()

    def is_silenced(self, alert: Alert, now: float) -> bool:
        return any(s.matches(alert, now) for s in self.silences.values())

    def evaluate(self, metric: str, value: float | None, thresholds: Thresholds, now: float) -> list[Notification]:
        """Advance the metric's alerts with one sample; the notifications to send, in order."""
        for silence_id in [s.id for s in self.silences.values() if s.ends <= now]:
            del self.silences[silence_id]
        out: list[Notification] = []
        critical = self._step(metric, "critical", value, thresholds, now, False, out)
        inhibited = critical is not None and critical.state == "firing"
        self._step(metric, "warning", value, thresholds, now, inhibited, out)
        return out

    def _step(self, metric: str, severity: Severity, value: float | None, thresholds: Thresholds, now: float,
              inhibited: bool, out: list[Notification]) -> Alert | None:
        life = self.lifecycle
        threshold = thresholds.of(severity)
        above = value is not None and value >= threshold
        alert = self.find(metric, severity)
        if alert is None:
            if not above or now < self.started + life.grace:
                return None
            alert = Alert(self.new_id(), metric, severity, threshold, threshold * (1 - life.hysteresis), value, now)
            self.active[alert.id] = alert
        alert.value, alert.threshold = value, threshold
        alert.resolve_below = threshold * (1 - life.hysteresis)
        if alert.state == "pending":
            if not above:
                self._retire(alert, now)
                return None
            if now - alert.since < life.for_seconds(severity):
                return alert
            alert.state, alert.fired_at = "firing", now
        alert.inhibited = inhibited
        alert.silenced = self.is_silenced(alert, now)
        if value is None or value < alert.resolve_below:
            alert.clear_since = now if alert.clear_since is None else alert.clear_since
            if now - alert.clear_since >= life.clear_for:
                self._retire(alert, now)
                if alert.announced and not alert.silenced:
                    out.append(self._notify(alert, "resolved", now))
                return None
        else:
            alert.clear_since = None
        if alert.inhibited or alert.silenced:
            return alert
        if not alert.announced:
            out.append(self._notify(alert, "firing", now))
        elif (not alert.acknowledged and alert.last_notified is not None
              and now - alert.last_notified >= life.repeat(severity)):
            out.append(self._notify(alert, "repeat", now))
        return alert

    def acknowledge(self, alert_id: str, by: str, now: float) -> Alert | None:
        """An operator has seen it: no more repeats (nor escalation) until it resolves. None when not active."""
        alert = self.active.get(alert_id)
        if alert is not None and not alert.acknowledged:
            alert.acknowledged, alert.acknowledged_by, alert.acknowledged_at = True, by, now
        return alert

    def silence(self, metric: str, severity: Severity | None, duration: float, now: float,
                comment: str = "", created_by: str = "") -> Silence:
        silence = Silence(self.new_id(), metric, severity, now, now + duration, comment, created_by)
        self.silences[silence.id] = silence
        return silence

    def unsilence(self, silence_id: str) -> Silence | None:
        return self.silences.pop(silence_id, None)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "active": [a.to_dict() for a in self.active.values()],
            "recent": [a.to_dict() for a in self.recent],
            "silences": [s.to_dict() for s in self.silences.values()],
        }

    def durable_state(self) -> dict[str, Any]:
        """What must survive a restart: firing alerts (their ids are in messages) and silences."""
        return {
            "firing": [a.to_dict() for a in self.active.values() if a.state == "firing"],
            "silences": [s.to_dict() for s in self.silences.values()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what ``durable_state`` kept; alerts of this run win over restored ones."""
        for data in state.get("firing", []):
            alert = Alert.from_dict(data)
            if self.find(alert.metric, alert.severity) is None:
                self.active[alert.id] = alert
        for data in state.get("silences", []):
            self.silences.setdefault(data["id"], Silence(**data))
