"""The dashboard's login throttle: a pure policy of (client, time)."""

from __future__ import annotations

from cluster.dashboard.login_throttle import LoginThrottle, Report


def test_a_client_gets_free_tries_then_growing_waits() -> None:
    throttle = LoginThrottle(free_tries=3, base_delay=1.0, max_delay=8.0, overall_limit=1000)
    for _ in range(3):
        assert throttle.retry_after("a", 0.0) == 0
        throttle.failed("a", 0.0)
    assert throttle.retry_after("a", 0.0) == 1.0
    assert throttle.retry_after("b", 0.0) == 0  # another client is not held up
    waits = []
    now = 0.0
    for _ in range(5):
        now += throttle.retry_after("a", now)
        throttle.failed("a", now)
        waits.append(throttle.retry_after("a", now))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped at max_delay
    throttle.succeeded("a")
    assert throttle.retry_after("a", now) == 0


def test_all_clients_together_are_limited_per_window() -> None:
    throttle = LoginThrottle(free_tries=100, overall_limit=10, window=60.0)
    for i in range(10):
        throttle.failed(f"10.0.0.{i}", float(i))
    assert throttle.retry_after("10.0.1.1", 10.0) == 50.0  # the oldest failure leaves the window at 60
    assert throttle.retry_after("10.0.1.1", 60.5) == 0


def test_one_report_per_window_with_the_counts() -> None:
    throttle = LoginThrottle(free_tries=5, overall_limit=1000)
    for _ in range(200):
        if throttle.retry_after("a", 0.0) == 0:
            throttle.failed("a", 0.0)
    throttle.failed("b", 0.0)
    assert throttle.report() == Report(refused=6, throttled=195, clients=2)
    assert throttle.report() is None


def test_memory_is_bounded() -> None:
    throttle = LoginThrottle(max_clients=100)
    for i in range(1000):
        throttle.failed(f"c{i}", 0.0)
    assert len(throttle._clients) == 100 and throttle.report().clients == 100
