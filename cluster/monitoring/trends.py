"""Trend of a metric over a window (pure): least-squares slope, labelled rising/falling/stable.

The label compares the change the slope predicts over the window with a
metric-specific scale (its warning threshold): a change smaller than
``STABLE_FRACTION`` of that scale is "stable". A CPU % that moves by 2 points
a minute is stable; an error rate that moves by 0.2 points is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

STABLE_FRACTION = 0.05
MIN_POINTS = 3


@dataclass(frozen=True)
class Trend:
    slope_per_second: float
    change_over_window: float
    direction: Literal["rising", "falling", "stable"]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (time, value) points; 0 with fewer than two distinct times."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    if var_t == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var_t


def trend(points: Sequence[tuple[float, float]], window: float, scale: float) -> Trend:
    """The trend of the points within the last ``window`` seconds of the newest one."""
    if points:
        newest = points[-1][0]
        points = [p for p in points if p[0] >= newest - window]
    if len(points) < MIN_POINTS:
        return Trend(0.0, 0.0, "stable")
    per_second = slope(points)
    change = per_second * window
    if abs(change) < STABLE_FRACTION * abs(scale) or change == 0:
        direction: Literal["rising", "falling", "stable"] = "stable"
    else:
        direction = "rising" if change > 0 else "falling"
    return Trend(per_second, change, direction)
