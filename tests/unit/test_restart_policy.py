from cluster.supervisor.restart_policy import RestartPolicy


def test_backoff_doubles_within_the_window_and_caps() -> None:
    policy = RestartPolicy(backoff_initial=0.5, backoff_max=4.0, crash_loop_deaths=10, crash_loop_window=60)
    delays = [policy.record_death(float(t)).delay for t in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_resets_once_deaths_leave_the_window() -> None:
    policy = RestartPolicy(backoff_initial=1.0, backoff_max=60.0, crash_loop_deaths=10, crash_loop_window=10)
    policy.record_death(0.0)
    policy.record_death(1.0)
    assert policy.record_death(100.0).delay == 1.0


def test_crash_loop_is_more_than_k_deaths_in_w_seconds() -> None:
    policy = RestartPolicy(backoff_initial=0.1, backoff_max=1.0, crash_loop_deaths=3, crash_loop_window=10)
    decisions = [policy.record_death(float(t)) for t in range(4)]
    assert [d.crash_loop for d in decisions] == [False, False, False, True]
    assert policy.record_death(30.0).crash_loop is False


def test_a_requested_exit_restarts_at_once_and_is_no_death() -> None:
    policy = RestartPolicy(backoff_initial=1.0, backoff_max=60.0, crash_loop_deaths=2, crash_loop_window=10)
    restarts = [policy.requested_exit(float(t)) for t in range(10)]
    assert {(d.delay, d.crash_loop, d.deaths_in_window, d.reason) for d in restarts} == {(0.0, False, 0, "restarted")}
    # The crashes after them back off as from the first one.
    assert policy.record_death(11.0).delay == 1.0 and policy.record_death(12.0).reason == "crashed"


def test_a_requested_exit_keeps_the_crash_loop_the_deaths_before_it_made() -> None:
    policy = RestartPolicy(backoff_initial=1.0, backoff_max=60.0, crash_loop_deaths=2, crash_loop_window=10)
    for t in range(3):
        policy.record_death(float(t))
    during = policy.requested_exit(3.0)
    assert (during.delay, during.crash_loop, during.deaths_in_window) == (0.0, True, 3)
    assert policy.requested_exit(20.0).crash_loop is False  # the deaths left the window
