"""Trends over a window and the health score."""

from __future__ import annotations

import pytest

from cluster.monitoring import health_score
from cluster.monitoring.alerts import Thresholds
from cluster.monitoring.trends import slope, trend

ALL = {
    "cpu": Thresholds(70, 90),
    "memory": Thresholds(80, 95),
    "response_time": Thresholds(1, 3),
    "error_rate": Thresholds(1, 5),
    "concurrent_users": Thresholds(800, 950),
    "queue_size": Thresholds(1000, 5000),
}
FINE = {"cpu": 10.0, "memory": 20.0, "response_time": 0.05, "error_rate": 0.0,
        "concurrent_users": 3.0, "queue_size": 0.0}


def test_slope_is_least_squares():
    assert slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert slope([(0, 1)]) == 0.0
    assert slope([(5, 1), (5, 2)]) == 0.0


def test_rising_falling_stable_relative_to_the_scale():
    rising = [(t, 10 + t) for t in range(0, 60, 5)]
    assert trend(rising, 60, 70).direction == "rising"
    falling = [(t, 80 - t) for t in range(0, 60, 5)]
    assert trend(falling, 60, 70).direction == "falling"
    # 2 points in a minute is under 5 % of a 70 % threshold
    gentle = [(t, 40 + t / 30) for t in range(0, 60, 5)]
    assert trend(gentle, 60, 70).direction == "stable"
    # ... but the same slope on an error rate (threshold 1 %) is a rise
    assert trend(gentle, 60, 1).direction == "rising"


def test_trend_only_looks_at_the_window_and_needs_three_points():
    old_spike = [(0, 100.0), (1, 100.0)] + [(t, 5.0) for t in range(100, 160, 10)]
    assert trend(old_spike, 60, 70).direction == "stable"
    assert trend([(0, 1.0), (1, 50.0)], 60, 1).direction == "stable"
    assert trend([], 60, 1).direction == "stable"


def test_metric_health_curve_points():
    t = Thresholds(1, 5)
    assert health_score.metric_health(None, t) == 100
    assert health_score.metric_health(0.5, t) == 100
    assert health_score.metric_health(1.0, t) == pytest.approx(70)
    assert health_score.metric_health(3.0, t) == pytest.approx(50)
    assert health_score.metric_health(5.0, t) == pytest.approx(30)
    assert health_score.metric_health(9.0, t) == pytest.approx(0)
    assert health_score.metric_health(1e6, t) == 0


def test_metric_health_with_equal_thresholds():
    t = Thresholds(10, 10)
    assert health_score.metric_health(10, t) == pytest.approx(70)
    assert health_score.metric_health(10.001, t) == 0


def test_score_all_fine_is_100_excellent():
    s = health_score.score(FINE, ALL)
    assert s == 100 and health_score.level(s) == "excellent"


def test_one_metric_at_warning_is_good():
    s = health_score.score({**FINE, "cpu": 70.0}, ALL)
    assert health_score.level(s) == "good"


def test_one_metric_at_critical_is_degraded_far_past_it_critical():
    at = health_score.score({**FINE, "error_rate": 5.0}, ALL)
    assert health_score.level(at) == "degraded"
    far = health_score.score({**FINE, "error_rate": 50.0}, ALL)
    assert health_score.level(far) == "critical"
    assert far < at


def test_score_never_rises_when_a_metric_worsens():
    previous = 101
    for err in [0, 0.5, 1, 2, 3, 5, 7, 9, 20]:
        s = health_score.score({**FINE, "error_rate": float(err)}, ALL)
        assert 0 <= s <= previous
        previous = s


def test_level_boundaries():
    assert [health_score.level(v) for v in (100, 90, 89, 70, 69, 40, 39, 0)] == [
        "excellent", "excellent", "good", "good", "degraded", "degraded", "critical", "critical",
    ]
