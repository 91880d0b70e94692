"""The autoscaling policy, rule by rule, with plain numbers: no processes, no sleeps."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings as hsettings, strategies as st

from cluster.autoscale.policy import Decision, Sample, ScaleState, cooldown_remaining, decide, external_change
from cluster.config.settings import AutoscaleSettings

FAST = dict(cooldown=10.0, up_samples=2, down_samples=3, stabilization_window=0.0, flap_window=0.0,
            max_up_step=4, max_down_step=1, tolerance=0.1)


def auto(**overrides: float) -> AutoscaleSettings:
    return AutoscaleSettings(**{**FAST, **overrides})


def run(settings: AutoscaleSettings, state: ScaleState, cpus: Iterable[float], start: float = 100.0,
        step: float = 1.0, **sample: float) -> tuple[list[Decision], ScaleState]:
    decisions = []
    for i, cpu in enumerate(cpus):
        decision, state = decide(settings, state, Sample(at=start + i * step, mean_cpu=cpu, **sample))
        decisions.append(decision)
    return decisions, state


def targets(decisions: list[Decision]) -> list[int]:
    return [d.target for d in decisions]


def test_scale_up_needs_up_samples_consecutive_samples_above_the_threshold() -> None:
    decisions, _ = run(auto(up_samples=3), ScaleState(4, 1, 16), [95, 95, 50, 95, 95, 95])
    assert targets(decisions) == [4, 4, 4, 4, 4, 5]
    assert decisions[-1].direction == "up"
    assert "95% > 80%" in decisions[-1].reason


def test_scale_up_step_is_proportional_to_the_load() -> None:
    decisions, _ = run(auto(), ScaleState(4, 1, 16), [100, 100])
    # ceil(4 * 100 / 80) = 5
    assert decisions[-1].target == 5
    decisions, _ = run(auto(), ScaleState(4, 1, 16), [160, 160])
    # ceil(4 * 160 / 80) = 8: the mean is over all of a worker's cores only with threads, but the
    # formula must still size by the ratio
    assert decisions[-1].target == 8


def test_scale_up_step_is_capped_by_max_up_step() -> None:
    decisions, _ = run(auto(max_up_step=2), ScaleState(8, 1, 32), [100, 100])
    # ceil(8 * 100 / 80) = 10, cap 2 -> 10 is allowed; with a heavier load the cap bites
    assert decisions[-1].target == 10
    decisions, _ = run(auto(max_up_step=2), ScaleState(8, 1, 32), [200, 200])
    assert decisions[-1].target == 10
    assert "capped by max_up_step" in decisions[-1].reason


def test_within_the_tolerance_of_the_target_nothing_changes() -> None:
    decisions, _ = run(auto(), ScaleState(4, 1, 16), [85, 85, 85, 85])
    assert targets(decisions) == [4, 4, 4, 4]
    assert "tolerance" in decisions[-1].reason
    decisions, _ = run(auto(tolerance=0.0), ScaleState(4, 1, 16), [85, 85])
    assert decisions[-1].target == 5


def test_scale_down_needs_down_samples_below_the_threshold_and_removes_max_down_step() -> None:
    decisions, _ = run(auto(down_samples=3, max_down_step=2), ScaleState(8, 1, 32), [10, 10, 40, 10, 10, 10])
    assert targets(decisions) == [8, 8, 8, 8, 8, 6]
    assert decisions[-1].direction == "down"


def test_scale_down_is_slower_than_up() -> None:
    settings = auto(up_samples=2, down_samples=3, max_up_step=4, max_down_step=1)
    ups, _ = run(settings, ScaleState(4, 1, 16), [200] * 3)
    downs, _ = run(settings, ScaleState(8, 1, 16), [0] * 3)
    assert [d.direction for d in ups].index("up") < [d.direction for d in downs].index("down")
    assert ups[-2].target - 4 == 4 and 8 - downs[-1].target == 1


def test_scale_down_keeps_the_highest_recommendation_of_the_stabilization_window() -> None:
    settings = auto(stabilization_window=30.0, cooldown=0.0)
    # 4 workers at 100 % recommend 5 (one over target, but max is 4); then the load drops
    state = ScaleState(4, 1, 4)
    decisions, state = run(settings, state, [100, 100], start=0.0)
    assert targets(decisions) == [4, 4]
    decisions, state = run(settings, state, [5] * 10, start=10.0)
    assert targets(decisions) == [4] * 10
    assert "stabilization window" in decisions[-1].reason
    decisions, state = run(settings, state, [5], start=31.0)
    assert decisions[-1].target == 3


def test_cooldown_blocks_any_change_after_a_change() -> None:
    settings = auto(cooldown=10.0)
    decisions, state = run(settings, ScaleState(2, 1, 16), [100] * 8, start=0.0)
    assert targets(decisions) == [2, 3, 3, 3, 3, 3, 3, 3]
    assert "cooldown" in decisions[-1].reason
    assert cooldown_remaining(settings, state, 7.0) == 4.0
    decisions, state = run(settings, state, [100], start=11.0)
    assert decisions[-1].target == 4


def test_scale_down_waits_out_the_cooldown_too() -> None:
    settings = auto(cooldown=10.0, down_samples=1)
    decisions, state = run(settings, ScaleState(2, 1, 16), [100, 100], start=0.0)
    assert decisions[-1].target == 3
    decisions, state = run(settings, state, [5] * 9, start=2.0)
    assert targets(decisions) == [3] * 9
    decisions, state = run(settings, state, [5], start=11.0)
    assert decisions[-1].target == 2


def test_flapping_doubles_the_scale_down_delay_and_decays() -> None:
    settings = auto(cooldown=10.0, flap_window=60.0, up_samples=1, down_samples=1)
    state = ScaleState(3, 1, 16)
    [down], state = run(settings, state, [5], start=0.0)
    assert down.target == 2
    [up], state = run(settings, state, [100], start=20.0)
    assert up.target == 3 and state.penalty == 2.0
    # the next scale-down waits 2 x cooldown after the up
    decisions, state = run(settings, state, [5] * 19, start=21.0)
    assert targets(decisions) == [3] * 19
    assert "flapping penalty" in decisions[-1].reason
    [down], state = run(settings, state, [5], start=40.0)
    assert down.target == 2
    # quiet for a flap window: the penalty decays back to 1
    [up], state = run(settings, state, [100], start=200.0)
    assert up.target == 3
    [down], state = run(settings, state, [5], start=210.0)
    assert down.target == 2


def test_the_count_is_clamped_to_the_bounds() -> None:
    decisions, _ = run(auto(), ScaleState(10, 2, 6), [50])
    assert decisions[0].target == 6 and decisions[0].direction == "down"
    decisions, _ = run(auto(), ScaleState(1, 2, 6), [50])
    assert decisions[0].target == 2
    decisions, _ = run(auto(cooldown=0), ScaleState(5, 1, 6), [400] * 4)
    assert max(targets(decisions)) == 6
    assert "already at max 6" in decisions[-1].reason
    decisions, _ = run(auto(cooldown=0), ScaleState(2, 2, 6), [0] * 5)
    assert targets(decisions) == [2] * 5
    assert "already at min 2" in decisions[-1].reason


def test_system_cpu_guard_blocks_scale_up_and_says_why() -> None:
    decisions, _ = run(auto(system_cpu_ceiling=90), ScaleState(4, 1, 16), [100] * 3, system_cpu=95.0)
    assert targets(decisions) == [4, 4, 4]
    assert "machine's CPU is 95%" in decisions[-1].reason
    decisions, _ = run(auto(system_cpu_ceiling=90), ScaleState(4, 1, 16), [100] * 2, system_cpu=85.0)
    assert decisions[-1].target == 5


def test_system_cpu_guard_does_not_block_scale_down() -> None:
    decisions, _ = run(auto(down_samples=1), ScaleState(4, 1, 16), [5], system_cpu=99.0)
    assert decisions[-1].target == 3


def test_no_new_worker_below_the_free_memory_floor() -> None:
    decisions, _ = run(auto(min_free_memory_mb=256), ScaleState(4, 1, 16), [100] * 2, free_memory_mb=100.0)
    assert decisions[-1].target == 4
    assert "free memory 100 MiB" in decisions[-1].reason


def test_no_scaling_while_crash_looping() -> None:
    for cpu, start in ((100, 4), (0, 4)):
        decisions, _ = run(auto(down_samples=1), ScaleState(start, 1, 16), [cpu] * 3, crash_looping=True)
        assert targets(decisions) == [start] * 3
        assert "crash-looping" in decisions[-1].reason


def test_no_decision_without_a_warmed_up_worker() -> None:
    decision, _ = decide(auto(), ScaleState(4, 1, 16), Sample(at=0.0, mean_cpu=None))
    assert decision.target == 4 and "warmed-up" in decision.reason


def test_manual_pin_holds_the_count_until_auto() -> None:
    state = ScaleState(4, 1, 16, mode="manual")
    decisions, state = run(auto(), state, [100] * 5 + [0] * 5)
    assert targets(decisions) == [4] * 10
    assert "manual" in decisions[-1].reason
    state = external_change(state, 4, 1, 16, "auto", now=200.0)
    decisions, _ = run(auto(), state, [100] * 2, start=300.0)
    assert decisions[-1].target == 5


def test_an_operator_change_restarts_the_cooldown() -> None:
    state = external_change(ScaleState(4, 1, 16), 6, 1, 16, "auto", now=100.0)
    decisions, _ = run(auto(cooldown=10.0), state, [100] * 3, start=101.0)
    assert targets(decisions) == [6] * 3


def test_steady_load_between_the_thresholds_never_changes_the_count() -> None:
    decisions, _ = run(auto(cooldown=0), ScaleState(4, 1, 16), [31, 79, 50, 60, 45, 78, 32] * 20)
    assert set(targets(decisions)) == {4}


def test_load_alternating_around_a_threshold_does_not_oscillate() -> None:
    decisions, _ = run(auto(cooldown=0, up_samples=2, down_samples=2), ScaleState(4, 1, 16), [95, 70] * 30)
    assert set(targets(decisions)) == {4}
    decisions, _ = run(auto(cooldown=0, up_samples=2, down_samples=2), ScaleState(4, 1, 16), [25, 35] * 30)
    assert set(targets(decisions)) == {4}


samples = st.lists(
    st.tuples(
        st.floats(0.05, 30.0),  # seconds since the previous sample
        st.one_of(st.none(), st.floats(0.0, 400.0)),  # mean CPU
        st.floats(0.0, 100.0),  # system CPU
        st.floats(0.0, 4096.0),  # free memory
        st.booleans(),  # crash-looping
        st.integers(0, 3),  # workers still warming up
        st.one_of(st.none(), st.integers(0, 100)),  # listen backlog
    ),
    max_size=120,
)


@hsettings(max_examples=300, deadline=None)
@given(
    samples=samples,
    bounds=st.tuples(st.integers(1, 10), st.integers(0, 20)),
    start=st.integers(0, 40),
    cooldown=st.floats(0.0, 60.0),
    up_samples=st.integers(1, 4),
    down_samples=st.integers(1, 4),
    max_up_step=st.integers(1, 8),
    max_down_step=st.integers(1, 4),
    window=st.floats(0.0, 120.0),
    flap_window=st.floats(0.0, 120.0),
)
def test_no_sample_sequence_leaves_the_bounds_or_changes_twice_within_a_cooldown(
    samples: list[tuple[float, float | None, float, float, bool, int, int | None]], bounds: tuple[int, int], start: int,
    cooldown: float, up_samples: int, down_samples: int, max_up_step: int, max_down_step: int,
    window: float, flap_window: float,
) -> None:
    minimum, extra = bounds
    maximum = minimum + extra
    settings = AutoscaleSettings(
        cooldown=cooldown, up_samples=up_samples, down_samples=down_samples, max_up_step=max_up_step,
        max_down_step=max_down_step, stabilization_window=window, flap_window=flap_window,
    )
    state = ScaleState(max(minimum, min(maximum, start)), minimum, maximum)
    now = 0.0
    last_change: float | None = None
    for gap, mean, system, free, crashing, warming, backlog in samples:
        now += gap
        sample = Sample(now, mean, mean, system, free, crashing, backlog=backlog, warming=warming)
        decision, state = decide(settings, state, sample)
        assert minimum <= decision.target <= maximum
        assert decision.target == state.target
        if decision.changed:
            # only the backlog rule may act within a cooldown, and only one worker up
            urgent = decision.reason.startswith("listen backlog") and decision.direction == "up"
            assert last_change is None or now - last_change >= cooldown or urgent
            last_change = now


def test_warming_workers_count_as_idle_when_sizing_a_scale_up() -> None:
    state = ScaleState(2, 1, 16)
    # one hot worker at 100 %, one still booting: 50 % for sizing, no new worker yet
    decisions, state = run(auto(cooldown=0), state, [100, 100], measured=1, warming=1)
    assert targets(decisions) == [2, 2]
    assert "warming up" in decisions[-1].reason
    decisions, _ = run(auto(cooldown=0), state, [100], start=200.0, measured=2, warming=0)
    assert decisions[-1].target == 3


def test_a_listen_backlog_over_the_threshold_adds_a_worker_at_once_even_in_cooldown() -> None:
    settings = auto(cooldown=30.0, backlog_threshold=33)
    decisions, state = run(settings, ScaleState(2, 1, 16), [100, 100], start=0.0)
    assert decisions[-1].target == 3
    # in cooldown, no CPU sample needed: 40 queued connections add one worker now
    decision, state = decide(settings, state, Sample(at=2.0, mean_cpu=None, backlog=40))
    assert decision.target == 4 and decision.direction == "up"
    assert decision.reason.startswith("listen backlog 40 > 33")
    # one at a time: not while a worker is still warming up
    decision, state = decide(settings, state, Sample(at=3.0, mean_cpu=100, backlog=40, warming=1))
    assert decision.target == 4 and "warming" in decision.reason


def test_the_backlog_rule_keeps_the_guards_and_the_max() -> None:
    settings = auto(backlog_threshold=33, system_cpu_ceiling=90)
    decision, _ = decide(settings, ScaleState(2, 1, 16), Sample(at=0.0, mean_cpu=50, backlog=50, system_cpu=95))
    assert decision.target == 2 and "machine's CPU is 95%" in decision.reason
    decision, _ = decide(settings, ScaleState(4, 1, 4), Sample(at=0.0, mean_cpu=50, backlog=50))
    assert decision.target == 4
    decision, _ = decide(auto(backlog_threshold=0), ScaleState(2, 1, 16), Sample(at=0.0, mean_cpu=50, backlog=500))
    assert decision.target == 2
