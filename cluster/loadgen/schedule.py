"""Pacing and plans: open-loop send times, stress steps, the breaking point. Pure, no I/O.

Open loop, as wrk2 does it: each connection of an endurance run owes
``rate`` requests per second from ``start``, so its request ``i`` is due at
``start + i / rate``. It is sent at that time, or at once when the
connection is late (the previous response came after it was due), and its
latency is counted from when it was due. A server that stalls for a second
therefore shows the second in every request that should have gone out
during the stall, instead of one slow request followed by fast ones
(coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


LATE_SEND_S = 0.005  # a free connection sending this long after its due time: the generator lagged


class Pacer:
    """The due times of one open-loop connection: request ``i`` is due at ``start + i / rate``."""

    def __init__(self, start: float, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.start = start
        self.interval = 1.0 / rate
        self.sent = 0

    def next_due(self) -> float:
        return self.start + self.sent * self.interval

    def take(self) -> float:
        """The due time of the next request, which is now counted as sent."""
        due = self.next_due()
        self.sent += 1
        return due


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow (earlier parts get the remainder)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass(frozen=True)
class Step:
    index: int
    users: int
    starts_at: float  # seconds from the start of the run
    ends_at: float


def stress_steps(start: int, max_users: int, step: int, step_duration: float) -> list[Step]:
    """The ramp: ``start``, ``start + step``, ... up to ``max_users`` (always included), one step each."""
    if start < 1 or step < 1 or max_users < start or step_duration <= 0:
        raise ValueError("need 1 <= start <= max_users, step >= 1 and step_duration > 0")
    users = list(range(start, max_users + 1, step))
    if users[-1] != max_users:
        users.append(max_users)
    return [Step(i, n, i * step_duration, (i + 1) * step_duration) for i, n in enumerate(users)]


def slo_breaches(step: dict[str, Any], slo_p95_ms: float | None, slo_errors_pct: float | None) -> list[str]:
    """Why a step's summary breaks the SLO (empty when it holds)."""
    reasons = []
    if not step["requests"]:
        return ["no request completed"]
    p95 = step["latency_ms"]["p95"]
    if slo_p95_ms is not None and (p95 is None or p95 > slo_p95_ms):
        reasons.append(f"p95 {p95} ms > {slo_p95_ms} ms")
    if slo_errors_pct is not None and step["error_pct"] > slo_errors_pct:
        reasons.append(f"errors {step['error_pct']} % > {slo_errors_pct} %")
    return reasons


def breaking_point(steps: list[dict[str, Any]], slo_p95_ms: float | None,
                   slo_errors_pct: float | None) -> dict[str, Any] | None:
    """The first step that breaks the SLO, with the reasons and the last step that held; None if all held."""
    for position, step in enumerate(steps):
        reasons = slo_breaches(step, slo_p95_ms, slo_errors_pct)
        if reasons:
            held = steps[position - 1] if position else None
            return {
                "step": step["step"],
                "users": step["users"],
                "reasons": reasons,
                "last_good_users": held["users"] if held else None,
                "last_good_rps": held["rps"] if held else None,
            }
    return None
