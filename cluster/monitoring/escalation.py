"""Escalation policies (pure): PagerDuty-style steps, repeated, stopped by an acknowledgement.

A policy (one per severity, ``alerts.escalation`` in the config) is an ordered
list of steps: notify these channels, then wait ``escalate_after_minutes``
before the next step; after the last step the chain starts over, ``repeat``
rounds in all. An escalation starts when its alert is announced (step 1 goes
out with the "firing" notification) and stops when the alert is acknowledged
or resolves, or after the last step of the last round. Times are given to
every call, so the schedule is tested without sleeping; the state is a JSON
document, so it survives a supervisor restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence

from cluster.monitoring.alerts import Severity


class Step(Protocol):
    channels: list[str]
    escalate_after_minutes: float


class Policy(Protocol):
    steps: Sequence[Step]
    repeat: int


def schedule(policy: Policy) -> list[tuple[float, tuple[str, ...]]]:
    """(seconds after the start, channels) of every step of every round, in order."""
    out: list[tuple[float, tuple[str, ...]]] = []
    offset = 0.0
    for _ in range(policy.repeat):
        for step in policy.steps:
            out.append((offset, tuple(step.channels)))
            offset += step.escalate_after_minutes * 60.0
    return out


@dataclass
class Escalation:
    alert_id: str
    severity: Severity
    started: float
    next_step: int = 0
    reached: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DueStep:
    alert_id: str
    step: int  # 1-based, counted across rounds
    channels: tuple[str, ...]


@dataclass
class Escalations:
    """The running escalations of the active alerts, and the policies they follow."""

    policies: Mapping[str, Policy]
    running: dict[str, Escalation] = field(default_factory=dict)

    def start(self, alert_id: str, severity: Severity, now: float) -> tuple[str, ...] | None:
        """Begin the escalation of an announced alert: step 1's channels, or None without a policy."""
        if severity not in self.policies:
            return None
        self.running[alert_id] = Escalation(alert_id, severity, now)
        (due,) = self._advance(self.running[alert_id], now, limit=1)
        return due.channels

    def _advance(self, esc: Escalation, now: float, limit: int | None = None) -> list[DueStep]:
        steps = schedule(self.policies[esc.severity])
        due: list[DueStep] = []
        while esc.stopped is None and esc.next_step < len(steps) and (limit is None or len(due) < limit):
            offset, channels = steps[esc.next_step]
            if esc.started + offset > now:
                break
            esc.next_step += 1
            esc.reached += [c for c in channels if c not in esc.reached]
            esc.history.append({"step": esc.next_step, "at": now, "channels": list(channels)})
            due.append(DueStep(esc.alert_id, esc.next_step, channels))
        if esc.next_step >= len(steps) and esc.stopped is None:
            esc.stopped = "exhausted"
        return due

    def due(self, now: float) -> list[DueStep]:
        """The steps whose time has come, one per escalation: steps missed while the supervisor was
        down come as one, numbered as the latest, to the union of their channels (not a burst)."""
        out: list[DueStep] = []
        for esc in self.running.values():
            if esc.severity not in self.policies:
                continue
            steps = self._advance(esc, now)
            if steps:
                channels = tuple(dict.fromkeys(c for step in steps for c in step.channels))
                out.append(DueStep(esc.alert_id, steps[-1].step, channels))
        return out

    def channels_of(self, alert_id: str) -> tuple[str, ...] | None:
        """Where the alert's repeats and resolution go: the channels its escalation reached."""
        esc = self.running.get(alert_id)
        return None if esc is None else tuple(esc.reached)

    def stop(self, alert_id: str, reason: str) -> Escalation | None:
        esc = self.running.get(alert_id)
        if esc is not None and esc.stopped in (None, "exhausted"):
            esc.stopped = reason
        return esc

    def forget(self, alert_ids: set[str]) -> None:
        """Drop the escalations of alerts that are no longer active."""
        for alert_id in [a for a in self.running if a not in alert_ids]:
            del self.running[alert_id]

    def durable_state(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.running.values()]

    def restore(self, state: list[dict[str, Any]]) -> None:
        for data in state:
            self.running.setdefault(data["alert_id"], Escalation(**data))
