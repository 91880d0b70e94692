"""The alert state machine: thresholds, pending, cooldown, escalation, suppression, resolve."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cluster.monitoring.alerts import AlertBook, Thresholds, fingerprint

T = Thresholds(warning=1.0, critical=5.0)


def kinds(notes):
    return [(n.kind, n.alert["severity"]) for n in notes]


def test_levels_are_inclusive_at_each_threshold():
    assert T.level(None) == "ok"
    assert T.level(0.99) == "ok"
    assert T.level(1.0) == "warning"
    assert T.level(4.99) == "warning"
    assert T.level(5.0) == "critical"


def test_fingerprint_is_stable_and_label_order_free():
    a = fingerprint({"alertname": "cpu", "severity": "warning"})
    assert a == fingerprint({"severity": "warning", "alertname": "cpu"})
    assert a != fingerprint({"alertname": "cpu", "severity": "critical"})
    assert len(a) == 16


def test_pending_until_the_condition_held_for_the_for_duration():
    book = AlertBook(for_seconds=30, cooldown=300)
    assert book.evaluate("cpu", 2.0, T, 0) == []
    (alert,) = book.snapshot()["active"]
    assert alert["state"] == "pending"
    assert book.evaluate("cpu", 2.0, T, 29) == []
    assert kinds(book.evaluate("cpu", 2.0, T, 30)) == [("firing", "warning")]


def test_pending_that_clears_before_firing_goes_silently():
    book = AlertBook(for_seconds=30, cooldown=300)
    book.evaluate("cpu", 2.0, T, 0)
    assert book.evaluate("cpu", 0.5, T, 10) == []
    assert book.snapshot() == {"active": [], "recent": [book.snapshot()["recent"][0]]}
    assert book.snapshot()["recent"][0]["notified"] is False


def test_repeats_no_sooner_than_the_cooldown():
    book = AlertBook(for_seconds=0, cooldown=300)
    assert kinds(book.evaluate("cpu", 2.0, T, 0)) == [("firing", "warning")]
    for t in range(5, 300, 5):
        assert book.evaluate("cpu", 2.0, T, t) == []
    assert kinds(book.evaluate("cpu", 2.0, T, 300)) == [("repeat", "warning")]
    assert book.evaluate("cpu", 2.0, T, 301) == []


def test_warning_escalates_to_critical_at_once_despite_for():
    book = AlertBook(for_seconds=60, cooldown=300)
    book.evaluate("err", 2.0, T, 0)
    assert kinds(book.evaluate("err", 2.0, T, 60)) == [("firing", "warning")]
    # the critical condition has held for no time at all, yet fires now
    assert kinds(book.evaluate("err", 9.0, T, 61)) == [("firing", "critical")]


def test_critical_from_ok_waits_for_for_like_any_alert():
    book = AlertBook(for_seconds=60, cooldown=300)
    assert book.evaluate("err", 9.0, T, 0) == []
    assert kinds(book.evaluate("err", 9.0, T, 60)) == [("firing", "critical")]


def test_critical_suppresses_the_warning_of_the_same_metric():
    book = AlertBook(for_seconds=0, cooldown=10)
    assert kinds(book.evaluate("err", 9.0, T, 0)) == [("firing", "critical")]
    states = {a["severity"]: a["state"] for a in book.snapshot()["active"]}
    assert states == {"critical": "firing", "warning": "suppressed"}
    # repeats of the critical only, never of the suppressed warning
    assert kinds(book.evaluate("err", 9.0, T, 10)) == [("repeat", "critical")]


def test_critical_suppression_does_not_touch_other_metrics():
    book = AlertBook(for_seconds=0, cooldown=300)
    book.evaluate("err", 9.0, T, 0)
    assert kinds(book.evaluate("cpu", 2.0, T, 0)) == [("firing", "warning")]


def test_deescalation_resolves_the_critical_and_notifies_the_warning_again():
    book = AlertBook(for_seconds=0, cooldown=300)
    book.evaluate("err", 2.0, T, 0)
    book.evaluate("err", 9.0, T, 1)
    assert kinds(book.evaluate("err", 2.0, T, 2)) == [("resolved", "critical"), ("firing", "warning")]


def test_resolved_notification_for_every_notified_alert_when_back_to_ok():
    book = AlertBook(for_seconds=0, cooldown=300)
    book.evaluate("err", 2.0, T, 0)  # warning notified
    book.evaluate("err", 9.0, T, 1)  # critical fires, warning suppressed
    assert kinds(book.evaluate("err", 0.0, T, 2)) == [("resolved", "critical"), ("resolved", "warning")]
    assert book.snapshot()["active"] == []
    assert [a["state"] for a in book.snapshot()["recent"]] == ["resolved", "resolved"]


def test_a_suppressed_never_notified_warning_resolves_silently():
    book = AlertBook(for_seconds=0, cooldown=300)
    book.evaluate("err", 9.0, T, 0)
    assert kinds(book.evaluate("err", 0.0, T, 1)) == [("resolved", "critical")]


def test_acknowledge_stops_repeats_until_resolved():
    book = AlertBook(for_seconds=0, cooldown=10)
    (note,) = book.evaluate("cpu", 2.0, T, 0)
    assert book.acknowledge(note.alert["id"]) is not None
    assert book.evaluate("cpu", 2.0, T, 100) == []
    assert kinds(book.evaluate("cpu", 0.0, T, 101)) == [("resolved", "warning")]
    assert book.acknowledge(note.alert["id"]) is None


def test_recent_is_bounded():
    book = AlertBook(for_seconds=0, cooldown=0, recent_limit=3)
    for t in range(10):
        book.evaluate("cpu", 2.0, T, 2 * t)
        book.evaluate("cpu", 0.0, T, 2 * t + 1)
    assert len(book.snapshot()["recent"]) == 3


def test_summary_names_metric_value_and_threshold():
    book = AlertBook(for_seconds=0, cooldown=300)
    (note,) = book.evaluate("error_rate", 9.5, T, 0)
    assert note.summary == "CRITICAL: error_rate is 9.5, threshold 5"
    (resolved,) = book.evaluate("error_rate", 0.0, T, 1)
    assert resolved.summary.startswith("RESOLVED critical: error_rate")


@given(st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=60))
def test_firing_notifications_never_outnumber_the_episodes_when_cooldown_is_long(values):
    """With an endless cooldown each alert notifies 'firing' at most once per episode."""
    book = AlertBook(for_seconds=0, cooldown=1e9)
    fired: dict[str, int] = {}
    resolved: dict[str, int] = {}
    for t, value in enumerate(values):
        for note in book.evaluate("m", value, T, t):
            target = resolved if note.kind == "resolved" else fired
            target[note.alert["severity"]] = target.get(note.alert["severity"], 0) + 1
            assert note.kind != "repeat"
    for severity, count in resolved.items():
        assert count <= fired.get(severity, 0)
