"""The autoscaling policy: a pure function of one sample, the previous state and the settings.

No I/O, no clock, no sleeps: ``decide`` gets the time inside the sample and
returns the target worker count, a human-readable reason and the next state,
so every rule below is unit-tested with plain numbers.

The rules:

1. The bounds first: a target outside ``[minimum, maximum]`` is clamped at once
   (an operator moved the bounds).
2. A manual pin (``cluster scale N``) holds the count until ``--auto``.
3. Nothing is decided without a measurement (every worker still warming up)
   or while the workers are crash-looping: more or fewer of a crashing
   worker helps nobody, and the CPU figures are meaningless then.
4. Scale up when the mean worker CPU is above ``scale_up_threshold`` for
   ``up_samples`` consecutive samples. The step is Kubernetes HPA's
   ``ceil(current * mean / target)`` capped at ``max_up_step``; within
   ``tolerance`` of the target nothing changes. The target utilisation is the
   up threshold itself: sizing the count so the mean lands at (or just under)
   it means a step never overshoots into the idle zone.
5. Scale down, slower than up: ``down_samples`` consecutive samples below
   ``scale_down_threshold``, at most ``max_down_step`` workers at a time, and
   never below the highest recommendation of the last ``stabilization_window``
   seconds (HPA's scale-down stabilisation). Because the recommendation is
   the same formula, the survivors are sized to stay at or under the up
   threshold, so a step down cannot by itself provoke a step up.
6. Guards on scaling up: not while the whole machine's CPU is above
   ``system_cpu_ceiling`` (more processes cannot add CPU that is not there)
   and not while free memory is below ``min_free_memory_mb``.
7. A listen backlog above ``backlog_threshold`` adds one worker at once,
   cooldown and consecutive samples or not (uWSGI busyness' backlog rule):
   queued connections are load the CPU figures do not show yet. Only one
   at a time (not while a worker warms up) and under the guards of 6.
8. A cooldown after every change (the backlog rule excepted); the wait before a scale-down is the
   cooldown times a flapping penalty. A scale-up within ``flap_window`` of a
   scale-down doubles the penalty (uWSGI busyness' penalty); it halves back
   for every ``flap_window`` without a flap.

Hysteresis follows from 4 and 5: a load between the thresholds resets both
consecutive counters, and a load alternating around one threshold never gets
the consecutive samples it needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from cluster.config.settings import AutoscaleSettings

Mode = Literal["auto", "manual"]
Direction = Literal["up", "down"]
MAX_PENALTY = 8.0


@dataclass(frozen=True)
class Sample:
    """What the autoscaler measured at time ``at`` (monotonic seconds)."""

    at: float
    mean_cpu: float | None
    """Mean CPU of the warmed-up workers, % of one core; None when no worker is warm yet."""
    max_cpu: float | None = None
    system_cpu: float = 0.0
    """The whole machine's CPU, % of all cores."""
    free_memory_mb: float = math.inf
    crash_looping: bool = False
    backlog: int | None = None
    """Connections waiting in the listen queue (None when unknown, e.g. unix sockets)."""
    measured: int = 1
    """How many workers the mean is over."""
    warming: int = 0
    """Workers left out of the mean because they are still warming up."""

    @property
    def sizing_cpu(self) -> float | None:
        """The mean with warming workers counted as idle, as HPA counts unready pods on a scale-up.

        A worker still booting will take load soon; sizing without it would
        add the same capacity twice.
        """
        if self.mean_cpu is None or not self.warming:
            return self.mean_cpu
        return self.mean_cpu * self.measured / (self.measured + self.warming)


@dataclass(frozen=True)
class ScaleState:
    """Everything the policy remembers between samples."""

    target: int
    minimum: int
    maximum: int
    mode: Mode = "auto"
    last_change_at: float | None = None
    last_down_at: float | None = None
    above: int = 0
    below: int = 0
    penalty: float = 1.0
    penalty_at: float | None = None
    recommendations: tuple[tuple[float, int], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Decision:
    target: int
    reason: str
    direction: Direction | None = None

    @property
    def changed(self) -> bool:
        return self.direction is not None


def cooldown_remaining(settings: AutoscaleSettings, state: ScaleState, now: float) -> float:
    """Seconds before the next change is allowed (0 when free to act)."""
    if state.last_change_at is None:
        return 0.0
    return max(0.0, settings.cooldown - (now - state.last_change_at))


def current_penalty(settings: AutoscaleSettings, state: ScaleState, now: float) -> float:
    """The scale-down delay multiplier, halved for every quiet ``flap_window`` since the last flap."""
    if state.penalty <= 1.0 or state.penalty_at is None or settings.flap_window <= 0:
        return 1.0
    quiet_windows = int((now - state.penalty_at) // settings.flap_window)
    return max(1.0, state.penalty / (2 ** quiet_windows))


def recommend(current: int, mean_cpu: float, settings: AutoscaleSettings) -> int:
    """HPA's desired count for the mean CPU, before steps, guards and bounds."""
    ratio = mean_cpu / settings.scale_up_threshold
    if abs(ratio - 1.0) <= settings.tolerance:
        return current
    return max(1, math.ceil(current * ratio))


def decide(settings: AutoscaleSettings, state: ScaleState, sample: Sample) -> tuple[Decision, ScaleState]:
    """The target for this sample, why, and the state to pass to the next call."""
    now = sample.at
    clamped = max(state.minimum, min(state.maximum, state.target))
    if clamped != state.target:
        direction: Direction = "up" if clamped > state.target else "down"
        reason = f"clamped {state.target} -> {clamped} to the bounds [{state.minimum}, {state.maximum}]"
        return Decision(clamped, reason, direction), _changed(settings, state, clamped, direction, now)
    if state.mode == "manual":
        return Decision(state.target, f"manual: pinned at {state.target} until `cluster scale --auto`"), state
    if sample.crash_looping:
        return _hold(state, "workers are crash-looping: no scaling until they stay up")
    if _backlog_over(settings, state, sample):
        return _backlog_up(settings, state, sample)
    if sample.mean_cpu is None:
        return _hold(state, "no warmed-up worker to measure yet")

    mean = sample.mean_cpu
    above = state.above + 1 if mean > settings.scale_up_threshold else 0
    below = state.below + 1 if mean < settings.scale_down_threshold else 0
    sizing = sample.sizing_cpu if sample.sizing_cpu is not None else mean
    raw = min(state.maximum, max(state.minimum, recommend(state.target, sizing, settings)))
    window = settings.stabilization_window
    recent = tuple((at, n) for at, n in state.recommendations if now - at < window) + ((now, raw),)
    state = replace(state, above=above, below=below, recommendations=recent)
    figures = f"mean CPU {mean:.0f}%"

    if above:
        return _consider_up(settings, state, sample, raw, figures)
    if below:
        return _consider_down(settings, state, now, figures)
    return _hold(state, f"{figures} between the thresholds "
                        f"({settings.scale_down_threshold:.0f}%..{settings.scale_up_threshold:.0f}%): steady")


def _guard(settings: AutoscaleSettings, sample: Sample) -> str | None:
    """Why no new worker may start now, or None."""
    if sample.system_cpu > settings.system_cpu_ceiling:
        return (f"the machine's CPU is {sample.system_cpu:.0f}% > {settings.system_cpu_ceiling:.0f}%: "
                "more workers cannot add CPU")
    if sample.free_memory_mb < settings.min_free_memory_mb:
        return f"free memory {sample.free_memory_mb:.0f} MiB < {settings.min_free_memory_mb} MiB: no new worker"
    return None


def _backlog_over(settings: AutoscaleSettings, state: ScaleState, sample: Sample) -> bool:
    return (settings.backlog_threshold > 0 and sample.backlog is not None
            and sample.backlog > settings.backlog_threshold and state.target < state.maximum)


def _backlog_up(settings: AutoscaleSettings, state: ScaleState, sample: Sample) -> tuple[Decision, ScaleState]:
    """uWSGI's backlog rule: connections queue, one more worker now, cooldown or not.

    Still one at a time: not while a new worker is warming up (it is about to
    drain the queue), and the machine's CPU and memory guards hold.
    """
    backlog = f"listen backlog {sample.backlog} > {settings.backlog_threshold}"
    if sample.warming:
        return _hold(state, f"{backlog} but {sample.warming} worker(s) still warming up will take load")
    blocked = _guard(settings, sample)
    if blocked:
        return _hold(state, f"{backlog} but {blocked}")
    target = state.target + 1
    reason = f"{backlog}: {state.target} -> {target} at once"
    return Decision(target, reason, "up"), _changed(settings, state, target, "up", sample.at)


def _consider_up(settings: AutoscaleSettings, state: ScaleState, sample: Sample, raw: int,
                 figures: str) -> tuple[Decision, ScaleState]:
    threshold = f"{figures} > {settings.scale_up_threshold:.0f}%"
    if state.above < settings.up_samples:
        return _hold(state, f"{threshold} for {state.above}/{settings.up_samples} samples")
    if state.target >= state.maximum:
        return _hold(state, f"{threshold} but already at max {state.maximum}")
    if raw <= state.target and sample.warming:
        return _hold(state, f"{threshold} but {sample.warming} worker(s) still warming up will take load")
    if raw <= state.target:
        return _hold(state, f"{threshold} but within the {settings.tolerance:.0%} tolerance of the target")
    blocked = _guard(settings, sample)
    if blocked:
        return _hold(state, f"{threshold} but {blocked}")
    wait = cooldown_remaining(settings, state, sample.at)
    if wait > 0:
        return _hold(state, f"{threshold}: cooldown, {wait:.1f}s left")
    target = min(raw, state.target + settings.max_up_step)
    capped = " (capped by max_up_step)" if target < raw else ""
    reason = f"{threshold} for {state.above} samples: {state.target} -> {target}{capped}"
    return Decision(target, reason, "up"), _changed(settings, state, target, "up", sample.at)


def _consider_down(settings: AutoscaleSettings, state: ScaleState, now: float,
                   figures: str) -> tuple[Decision, ScaleState]:
    threshold = f"{figures} < {settings.scale_down_threshold:.0f}%"
    if state.below < settings.down_samples:
        return _hold(state, f"{threshold} for {state.below}/{settings.down_samples} samples")
    if state.target <= state.minimum:
        return _hold(state, f"{threshold} but already at min {state.minimum}")
    highest = max(n for _, n in state.recommendations)
    if highest >= state.target:
        return _hold(state, f"{threshold} but {highest} workers were recommended within the "
                            f"{settings.stabilization_window:.0f}s stabilization window")
    penalty = current_penalty(settings, state, now)
    if state.last_change_at is not None:
        wait = settings.cooldown * penalty - (now - state.last_change_at)
        if wait > 0:
            why = f" (x{penalty:g} flapping penalty)" if penalty > 1 else ""
            return _hold(state, f"{threshold}: scale-down delay{why}, {wait:.1f}s left")
    target = max(highest, state.target - settings.max_down_step, state.minimum)
    reason = f"{threshold} for {state.below} samples: {state.target} -> {target}"
    return Decision(target, reason, "down"), _changed(settings, state, target, "down", now)


def _hold(state: ScaleState, reason: str) -> tuple[Decision, ScaleState]:
    return Decision(state.target, reason), state


def _changed(settings: AutoscaleSettings, state: ScaleState, target: int, direction: Direction,
             now: float) -> ScaleState:
    state = replace(state, target=target, last_change_at=now, above=0, below=0)
    if direction == "down":
        return replace(state, last_down_at=now)
    if state.last_down_at is not None and now - state.last_down_at <= settings.flap_window:
        # Up soon after down: we retired a worker we needed, so wait longer before the next one.
        penalty = min(MAX_PENALTY, current_penalty(settings, state, now) * 2)
        return replace(state, penalty=penalty, penalty_at=now)
    return state


def external_change(state: ScaleState, target: int, minimum: int, maximum: int, mode: Mode,
                    now: float) -> ScaleState:
    """The operator changed the count, the bounds or the mode: adopt them; a new count restarts the cooldown."""
    if target != state.target:
        state = replace(state, target=target, last_change_at=now, above=0, below=0, recommendations=())
    return replace(state, minimum=minimum, maximum=maximum, mode=mode)
