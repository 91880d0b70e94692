"""The tick arithmetic of periodic jobs and the leader lease's policy: pure, a given clock, no sleeps."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.queues import periodic, registry
from cluster.queues.leader import LeasePolicy, holder_name
from cluster.queues.periodic import Due, due_tick, job_id, latest_tick, next_tick, tick_of

EVERY_5_MIN = "*/5 * * * *"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc).timestamp()  # on a 5-minute tick


def test_latest_and_next_tick_around_a_tick() -> None:
    assert latest_tick(EVERY_5_MIN, T0) == T0
    assert latest_tick(EVERY_5_MIN, T0 - 0.5) == T0 - 300
    assert latest_tick(EVERY_5_MIN, T0 + 299.9) == T0
    assert next_tick(EVERY_5_MIN, T0) == T0 + 300
    assert next_tick(EVERY_5_MIN, T0 - 0.5) == T0


def test_the_sixth_field_is_seconds() -> None:
    assert latest_tick("* * * * * *", T0 + 7.3) == T0 + 7
    assert next_tick("* * * * * */10", T0 + 1) == T0 + 10


def test_nothing_is_due_before_a_tick_is_recorded() -> None:
    assert due_tick(EVERY_5_MIN, None, T0 + 10) == Due(None)


def test_nothing_is_due_until_the_next_tick() -> None:
    assert due_tick(EVERY_5_MIN, T0, T0) == Due(None)
    assert due_tick(EVERY_5_MIN, T0, T0 + 299) == Due(None)


def test_the_next_tick_is_due_once_reached() -> None:
    assert due_tick(EVERY_5_MIN, T0, T0 + 300) == Due(T0 + 300, skipped=False)
    assert due_tick(EVERY_5_MIN, T0, T0 + 301.5) == Due(T0 + 300, skipped=False)


def test_after_downtime_only_the_latest_missed_tick_is_due() -> None:
    assert due_tick(EVERY_5_MIN, T0, T0 + 3600 + 10) == Due(T0 + 3600, skipped=True)


def test_a_recorded_tick_ahead_of_this_clock_is_not_repeated() -> None:
    """A scheduler whose clock lags the one that recorded the tick does not fire it again."""
    assert due_tick(EVERY_5_MIN, T0 + 300, T0 + 200) == Due(None)


@given(last=st.integers(0, 10**6), elapsed=st.floats(0, 10**5, allow_nan=False),
       cron=st.sampled_from(["* * * * * *", "*/7 * * * * *", "* * * * *", "*/5 * * * *", "0 * * * *"]))
def test_the_due_tick_is_the_latest_one_after_last(last: int, elapsed: float, cron: str) -> None:
    base = T0 + last
    last_tick = latest_tick(cron, base)
    now = base + elapsed
    due = due_tick(cron, last_tick, now)
    if due.tick is None:
        assert next_tick(cron, last_tick) > now
    else:
        assert last_tick < due.tick <= now
        assert next_tick(cron, due.tick) > now  # no later tick was passed over
        assert due.skipped == (next_tick(cron, last_tick) < due.tick)


def test_job_ids_carry_the_tick() -> None:
    assert job_id("reports.daily", T0) == f"periodic:reports.daily:{int(T0)}"
    assert tick_of(job_id("a:b", T0)) == T0
    assert tick_of("some-other-id") is None


@pytest.mark.parametrize("expression", ["bad", "* * * *", "* * * * * * *", "61 * * * *", 5])
def test_a_bad_cron_is_refused_with_its_text(expression: object) -> None:
    with pytest.raises(ValueError, match="cron must be"):
        periodic.check_cron(expression)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cron must be"):
        registry.job("never-registered", cron=expression)  # type: ignore[arg-type]


def test_a_periodic_name_too_long_for_its_ids_is_refused() -> None:
    with pytest.raises(ValueError, match="job_id"):
        registry.job("x" * 120, cron="* * * * *")(lambda: None)
    assert "x" * 120 not in registry.REGISTRY


def test_a_leader_wakes_for_the_next_tick_or_to_renew() -> None:
    policy = LeasePolicy(60.0)
    assert policy.renew_every == 15.0 and policy.check_every == 30.0
    assert policy.wait(True, 2.5) == 2.5
    assert policy.wait(True, 600.0) == 15.0
    assert policy.wait(True, -0.1) == 0.0
    assert policy.wait(True, None) == 15.0


def test_a_follower_only_checks_the_lease() -> None:
    assert LeasePolicy(60.0).wait(False, 0.5) == 30.0


def test_the_holder_is_named_by_its_token() -> None:
    assert holder_name("host-4026531836-123:ab12cd34") == "host-4026531836-123"
    assert holder_name(None) is None
