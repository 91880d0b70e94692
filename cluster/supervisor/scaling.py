"""The HTTP tier's size as the supervisor owns it: bounds, target, mode, and how each request moves them.

Pure: every function returns a new ``WorkerRuntime``; the command loop
(``cluster.supervisor.core``) applies it (target file, settings file, logs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

ScaleMode = Literal["auto", "manual", "fixed"]


@dataclass(frozen=True)
class WorkerRuntime:
    """The state only the supervisor changes: bounds, target, mode.

    ``auto``: the autoscaler decides; ``manual``: pinned by `cluster scale N`
    or TTIN/TTOU; ``fixed``: min = max.
    """

    minimum: int
    maximum: int
    target: int
    mode: ScaleMode

    @classmethod
    def initial(cls, minimum: int, maximum: int) -> WorkerRuntime:
        return cls(minimum, maximum, minimum, "auto" if minimum < maximum else "fixed")

    def clamp(self, count: int) -> int:
        return max(self.minimum, min(self.maximum, count))


def rescale(runtime: WorkerRuntime, workers: int | None = None, auto: bool = False,
            minimum: int | None = None, maximum: int | None = None) -> WorkerRuntime:
    """`cluster scale`: pin a count, return to auto, or move the bounds; ValueError for a request out of bounds."""
    new_min = runtime.minimum if minimum is None else minimum
    new_max = runtime.maximum if maximum is None else maximum
    if new_min < 1 or new_min > new_max:
        raise ValueError(f"bounds min={new_min} max={new_max}: need 1 <= min <= max")
    if workers is not None and not new_min <= workers <= new_max:
        raise ValueError(f"{workers} workers is outside [{new_min}, {new_max}]: move the bounds with --min/--max")
    moved = replace(runtime, minimum=new_min, maximum=new_max)
    if workers is not None:
        return replace(moved, mode="manual", target=workers)
    mode = moved.mode
    if auto or (mode == "fixed" and new_min < new_max):
        mode = "auto"
    return replace(moved, mode=mode, target=moved.clamp(moved.target))


def nudge(runtime: WorkerRuntime, step: int) -> WorkerRuntime:
    """SIGTTIN (+1) / SIGTTOU (-1): one worker more or fewer within the bounds, pinned."""
    return replace(runtime, mode="manual", target=runtime.clamp(runtime.target + step))


def autoscaled(runtime: WorkerRuntime, count: int) -> WorkerRuntime:
    """The autoscaler's decision, within the bounds; an operator's pin wins."""
    if runtime.mode == "manual":
        return runtime
    return replace(runtime, target=runtime.clamp(count))
