"""The breaker's state machine, driven by hand-made outcomes and times: no clock, no sleep."""

from __future__ import annotations

from cluster.resilience.breaker_policy import BreakerPolicy, BreakerState, Outcome, admit, open_wait, record

POLICY = BreakerPolicy(failure_rate=0.5, slow_rate=0.8, slow_call_seconds=1.0, window=10, minimum_calls=4,
                       open_wait=5, max_open_wait=12, half_open_calls=2)
OK = Outcome(False, 0.01)
FAIL = Outcome(True, 0.01)
SLOW = Outcome(False, 2.0)


def feed(state: BreakerState, outcomes: list[Outcome], start: float, step: float = 0.125) -> BreakerState:
    now = start
    for outcome in outcomes:
        state, allowed = admit(state, POLICY, now)
        assert allowed
        state = record(state, POLICY, outcome, now)
        now += step
    return state


def test_failures_below_the_minimum_number_of_calls_never_open() -> None:
    assert feed(BreakerState(), [FAIL] * 3, 100).name == "closed"


def test_a_failure_rate_at_the_threshold_opens_with_the_base_wait() -> None:
    state = feed(BreakerState(), [OK, FAIL, OK, FAIL], 100)
    assert state.name == "open"
    assert state.open_until == 100.375 + 5
    assert "failure rate 2/4" in state.reason


def test_a_failure_rate_below_the_threshold_stays_closed() -> None:
    assert feed(BreakerState(), [OK, OK, OK, FAIL, OK], 100).name == "closed"


def test_outcomes_older_than_the_window_are_forgotten() -> None:
    state = feed(BreakerState(), [FAIL, FAIL, FAIL], 100)
    state = feed(state, [OK, FAIL], 111)  # the three failures left the 10 s window
    assert state.name == "closed"


def test_slow_calls_open_on_the_slow_rate() -> None:
    state = feed(BreakerState(), [OK, SLOW, SLOW, SLOW, SLOW], 100)
    assert state.name == "open"
    assert "slow-call rate 4/5" in state.reason


def test_open_refuses_until_the_wait_is_over_then_lets_the_trials_through() -> None:
    state = feed(BreakerState(), [FAIL] * 4, 100)
    until = state.open_until
    state, allowed = admit(state, POLICY, until - 0.01)
    assert not allowed and state.name == "open"
    state, first = admit(state, POLICY, until)
    state, second = admit(state, POLICY, until)
    state, third = admit(state, POLICY, until)
    assert (state.name, first, second, third) == ("half_open", True, True, False)


def test_trials_that_pass_close_and_forget_the_openings() -> None:
    state = feed(BreakerState(), [FAIL] * 4, 100)
    now = state.open_until
    state = feed(state, [OK, OK], now)
    assert state.name == "closed" and state.openings == 0 and state.buckets == ()


def test_a_failed_trial_opens_again_for_longer_and_the_wait_is_capped() -> None:
    state = feed(BreakerState(), [FAIL] * 4, 100)
    assert state.open_until == 100.375 + 5
    now = state.open_until
    state = feed(state, [FAIL], now)
    assert state.name == "open" and state.openings == 2 and state.open_until == now + 10
    now = state.open_until
    state = feed(state, [SLOW], now)
    assert state.openings == 3 and state.open_until == now + 12  # capped at max_open_wait
    assert [open_wait(POLICY, n) for n in (1, 2, 3, 9)] == [5, 10, 12, 12]


def test_an_outcome_reported_after_opening_changes_nothing() -> None:
    state = feed(BreakerState(), [FAIL] * 4, 100)
    assert record(state, POLICY, FAIL, 100.5) == state


def test_consecutive_failures_open_even_after_a_window_full_of_successes() -> None:
    policy = BreakerPolicy(failure_rate=0.5, minimum_calls=4, window=10, consecutive_failures=3)
    state = BreakerState()
    now = 100.0
    for outcome in [OK] * 50 + [FAIL, FAIL, OK, FAIL, FAIL]:
        state = record(state, policy, outcome, now)
    assert state.name == "closed" and state.streak == 2
    state = record(state, policy, FAIL, now)
    assert state.name == "open" and "3 failures in a row" in state.reason


def test_a_trial_that_never_reached_the_callee_gives_its_slot_back() -> None:
    from cluster.resilience.breaker_policy import forgo

    state = feed(BreakerState(), [FAIL] * 4, 100)
    state, _ = admit(state, POLICY, state.open_until)
    state, _ = admit(state, POLICY, state.open_until)
    state, allowed = admit(state, POLICY, state.open_until)
    assert not allowed
    state, allowed = admit(forgo(state), POLICY, state.open_until)
    assert allowed
