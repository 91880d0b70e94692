from cluster.db.health_state import HostHealth


def test_two_failed_checks_take_a_host_out_and_two_good_ones_bring_it_back() -> None:
    h = HostHealth()
    assert h.check_failed() is False and h.up
    assert h.check_failed() is True and not h.up
    assert h.check_failed() is False
    assert h.check_passed() is False and not h.up
    assert h.check_passed() is True and h.up


def test_a_good_check_between_failures_resets_the_count() -> None:
    h = HostHealth()
    h.check_failed()
    h.check_passed()
    assert h.check_failed() is False and h.up


def test_a_failure_while_coming_back_starts_the_rise_again() -> None:
    h = HostHealth()
    h.request_failed()
    h.check_passed()
    h.check_failed()
    assert h.check_passed() is False and not h.up
    assert h.check_passed() is True


def test_a_request_seen_connection_error_takes_the_host_out_at_once() -> None:
    h = HostHealth()
    assert h.request_failed() is True and not h.up
    assert h.request_failed() is False


def test_the_first_check_decides_alone() -> None:
    h = HostHealth()
    h.first_check(False)
    assert not h.up
    h.first_check(True)
    assert h.up
