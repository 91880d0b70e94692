"""The supervisor's pure decisions: worker exits as the arbiter reports them, and health probes."""

from __future__ import annotations

from cluster.arbiter.exits import decode, encode, exit_reason
from cluster.supervisor.health import HealthState
from cluster.supervisor.worker_exits import ExitTally


def test_the_arbiter_names_each_exit_by_what_it_knows() -> None:
    def reason(**known: bool) -> str:
        return exit_reason(**{"stopping": False, "retiring": False, "stale": False, "timed_out": False, **known})

    assert reason() == "crashed"
    assert reason(retiring=True) == "retired"
    assert reason(stale=True) == "reload"
    assert reason(timed_out=True) == "timeout"
    assert reason(stopping=True, retiring=True) == "shutdown"


def test_reports_round_trip_and_foreign_datagrams_are_refused() -> None:
    assert decode(encode(123, "retired")) == (123, "retired")
    assert decode(b"not json") is None
    assert decode(b'{"pid": 1, "reason": "bored"}') is None
    assert decode(b'{"pid": "1", "reason": "crashed"}') is None


def test_only_failures_within_the_window_make_a_crash_loop() -> None:
    tally = ExitTally(deaths=3, window=60)
    for at in range(5):
        tally.record("retired", float(at))
        tally.record("reload", float(at))
    assert not tally.crash_looping(5.0)
    tally.record("crashed", 10.0)
    tally.record("timeout", 20.0)
    assert not tally.crash_looping(20.0)
    tally.record("crashed", 30.0)
    assert tally.crash_looping(30.0)
    assert not tally.crash_looping(75.0)
    assert tally.total == 13 and tally.by_reason["crashed"] == 2


def test_failed_probes_in_a_row_call_for_one_reload_but_not_while_booting() -> None:
    health = HealthState(failures_before_reload=2)
    assert not health.record(False, "refused", booting=True)
    assert not health.record(False, "refused", booting=True)
    assert not health.record(False, "refused")
    assert health.record(False, "refused")
    assert health.reloads == 1 and health.consecutive_failures == 0
    assert not health.record(False, "refused")
    assert not health.record(True, "200 pass")
    assert not health.record(False, "refused")
