"""The alert state machine: grace, for, hysteresis, repeats, inhibition, silences, acknowledgement."""

from __future__ import annotations

from itertools import count

from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.monitoring.alerts import AlertBook, Lifecycle, Thresholds

T = Thresholds(warning=70.0, critical=90.0)
DEFAULTS = Lifecycle()
QUICK = Lifecycle(for_warning=0, for_critical=0, clear_for=0, hysteresis=0, grace=0)


def book(life: Lifecycle = DEFAULTS, started: float = 0.0) -> AlertBook:
    ids = count(1)
    return AlertBook(life, started, new_id=lambda: f"a{next(ids)}")


def kinds(notes):
    return [(n.kind, n.alert["severity"]) for n in notes]


def run(b: AlertBook, samples, metric="cpu", step=5.0, start=0.0):
    """Feed ``samples`` every ``step`` seconds; every notification with its time."""
    out = []
    for i, value in enumerate(samples):
        now = start + i * step
        out += [(now, n) for n in b.evaluate(metric, value, T, now)]
    return out


def test_levels_are_inclusive_at_each_threshold():
    assert T.level(None) == "ok"
    assert T.level(69.9) == "ok"
    assert T.level(70.0) == "warning"
    assert T.level(90.0) == "critical"


def test_defaults_nothing_fires_in_the_first_minute_of_a_saturated_host():
    notes = run(book(), [100.0] * 60, step=1.0)  # one sample a second for a minute
    assert notes == []


def test_defaults_a_saturated_host_fires_critical_after_grace_plus_for():
    notes = run(book(), [100.0] * 40, step=5.0)  # 0..195 s
    assert [(t, n.kind, n.alert["severity"]) for t, n in notes] == [(90.0, "firing", "critical")]


def test_the_for_clock_starts_after_the_grace():
    b = book(Lifecycle(grace=60, for_warning=60))
    notes = run(b, [75.0] * 30, step=5.0)
    assert [t for t, _ in notes] == [120.0]


def test_zero_for_is_still_allowed():
    b = book(Lifecycle(for_warning=0, for_critical=0, grace=0))
    assert kinds(b.evaluate("cpu", 75.0, T, 0)) == [("firing", "warning")]


def test_pending_that_clears_before_firing_goes_silently():
    b = book(Lifecycle(grace=0))
    assert b.evaluate("cpu", 75.0, T, 0) == []
    assert b.snapshot()["active"][0]["state"] == "pending"
    assert b.evaluate("cpu", 50.0, T, 10) == []
    assert b.snapshot()["active"] == []
    assert b.snapshot()["recent"][0]["announced"] is False


def test_resolves_only_after_clear_for_below_the_resolve_threshold_and_carries_the_value():
    b = book(Lifecycle(grace=0, for_warning=0, clear_for=60, hysteresis=0.1))
    b.evaluate("cpu", 75.0, T, 0)
    assert b.evaluate("cpu", 65.0, T, 10) == []  # below 70 but not below 63: still firing
    assert b.evaluate("cpu", 60.0, T, 20) == []  # clear from now on
    assert b.evaluate("cpu", 50.0, T, 79) == []
    (resolved,) = b.evaluate("cpu", 41.5, T, 80)
    assert resolved.kind == "resolved"
    assert resolved.alert["value"] == 41.5
    assert resolved.summary == "RESOLVED warning: cpu is 41.5, below 63 (threshold 70)"


def test_a_sample_back_above_the_resolve_threshold_restarts_the_clear_clock():
    b = book(Lifecycle(grace=0, for_warning=0, clear_for=60))
    b.evaluate("cpu", 75.0, T, 0)
    b.evaluate("cpu", 50.0, T, 10)
    b.evaluate("cpu", 64.0, T, 50)  # back into the band: not clear
    assert b.evaluate("cpu", 50.0, T, 80) == []
    assert kinds(b.evaluate("cpu", 50.0, T, 140)) == [("resolved", "warning")]


def test_repeats_per_severity_interval_and_not_after_acknowledge():
    b = book(Lifecycle(grace=0, for_warning=0, repeat_warning=300))
    (note,) = b.evaluate("cpu", 75.0, T, 0)
    assert all(b.evaluate("cpu", 75.0, T, t) == [] for t in range(5, 300, 5))
    assert kinds(b.evaluate("cpu", 75.0, T, 300)) == [("repeat", "warning")]
    assert b.acknowledge(note.alert["id"], "cli", 301).acknowledged_by == "cli"
    assert b.evaluate("cpu", 75.0, T, 10_000) == []


def test_critical_inhibits_the_warning_which_is_announced_once_the_critical_resolves():
    b = book(QUICK)
    assert kinds(b.evaluate("cpu", 95.0, T, 0)) == [("firing", "critical")]
    states = {a["severity"]: (a["state"], a["inhibited"]) for a in b.snapshot()["active"]}
    assert states == {"critical": ("firing", False), "warning": ("firing", True)}
    assert kinds(b.evaluate("cpu", 75.0, T, 1)) == [("resolved", "critical"), ("firing", "warning")]
    assert kinds(b.evaluate("cpu", 10.0, T, 2)) == [("resolved", "warning")]


def test_an_inhibited_never_announced_warning_resolves_silently():
    b = book(QUICK)
    b.evaluate("cpu", 95.0, T, 0)
    assert kinds(b.evaluate("cpu", 10.0, T, 1)) == [("resolved", "critical")]


def test_silence_withholds_until_it_expires_then_announces_if_still_firing():
    b = book(QUICK)
    silence = b.silence("cpu", None, 100.0, now=0)
    assert b.evaluate("cpu", 75.0, T, 10) == []
    assert b.snapshot()["active"][0]["silenced"] is True
    assert kinds(b.evaluate("cpu", 75.0, T, 100)) == [("firing", "warning")]
    assert silence.id not in b.silences


def test_silence_of_one_severity_and_removal():
    b = book(QUICK)
    silence = b.silence("cpu", "critical", 3600.0, now=0)
    assert b.evaluate("cpu", 95.0, T, 1) == []  # the critical is silenced; it still inhibits the warning
    assert b.unsilence(silence.id) is silence
    assert kinds(b.evaluate("cpu", 95.0, T, 2)) == [("firing", "critical")]
    assert b.unsilence(silence.id) is None


def test_ids_are_random_and_new_per_episode():
    b = AlertBook(QUICK, 0)
    (first,) = b.evaluate("cpu", 75.0, T, 0)
    b.evaluate("cpu", 10.0, T, 1)
    (second,) = b.evaluate("cpu", 75.0, T, 2)
    assert first.alert["id"] != second.alert["id"]
    assert len(first.alert["id"]) == 32 and int(first.alert["id"], 16) >= 0


def test_durable_state_round_trip_keeps_the_id_and_the_announcement():
    b = book(QUICK)
    (note,) = b.evaluate("cpu", 75.0, T, 0)
    b.silence("memory", None, 3600, now=0)
    restored = book(DEFAULTS, started=1000)
    restored.restore(b.durable_state())
    # in the grace of the new run: no second "firing" for the same alert, and it resolves normally
    assert restored.evaluate("cpu", 75.0, T, 1001) == []
    assert restored.find("cpu", "warning").id == note.alert["id"]
    assert set(restored.silences) == set(b.silences)
    restored.evaluate("cpu", 10.0, T, 1002)
    assert kinds(restored.evaluate("cpu", 10.0, T, 1062)) == [("resolved", "warning")]


values = st.floats(min_value=0, max_value=150, allow_nan=False)
gaps = st.floats(min_value=0.1, max_value=120)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(gaps, values), min_size=1, max_size=200),
       st.sampled_from([Lifecycle(), QUICK, Lifecycle(for_warning=0, for_critical=0, clear_for=0, grace=0,
                                                      repeat_warning=50, repeat_critical=20)]))
def test_no_sample_sequence_notifies_an_alert_more_than_once_per_repeat_interval(samples, life):
    b = book(life)
    last: dict[str, float] = {}
    resolved_at: dict[str, float] = {}
    announced: dict[str, float] = {}
    now = 0.0
    for gap, value in samples:
        now += gap
        for note in b.evaluate("cpu", value, T, now):
            a = note.alert
            if note.kind == "resolved":
                resolved_at[a["severity"]] = now
                continue
            if a["id"] in last:
                assert note.kind == "repeat"
                assert now - last[a["id"]] >= life.repeat(a["severity"])
            else:
                assert note.kind == "firing"
                # a new episode of the same alert needs the old one clear for clear_for, then for
                previous = resolved_at.get(a["severity"])
                if previous is not None:
                    assert now - previous >= life.for_seconds(a["severity"])
            last[a["id"]] = now
            announced[a["severity"]] = now


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=63.5, max_value=89.0), min_size=1, max_size=300), gaps)
def test_a_value_oscillating_around_the_threshold_within_the_band_never_flaps(samples, gap):
    """Once above 70, anything that stays above 63 (70 less 10 %) is one alert: one firing, no resolve."""
    b = book(Lifecycle(grace=0))
    notes = run(b, [75.0] * 20 + samples, step=gap)
    assert [n.kind for _, n in notes if n.alert["severity"] == "warning"].count("firing") <= 1
    assert not [n for _, n in notes if n.kind == "resolved"]


def test_lifecycle_from_settings_defaults_and_the_seed_overrides():
    from cluster.config.settings import MonitoringSettings

    assert Lifecycle.from_settings(MonitoringSettings()) == Lifecycle()
    seed = Lifecycle.from_settings(MonitoringSettings(alert_for=0, alert_cooldown=300))
    assert (seed.for_warning, seed.for_critical, seed.repeat_warning, seed.repeat_critical) == (0, 0, 300, 300)
