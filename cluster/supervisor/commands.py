"""What can be asked of the supervisor: one frozen dataclass per command.

Signal handlers, the control API and the periodic tasks only build these and
put them on the supervisor's queue (``Supervisor.submit``); its one command
loop handles them in order, so no two of them ever run at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stop:
    reason: str


@dataclass(frozen=True)
class Reload:
    """Re-read the configuration and replace the HTTP workers with it."""

    reason: str


@dataclass(frozen=True)
class Scale:
    """`cluster scale`: pin a count (manual mode), return to auto, or move the bounds."""

    workers: int | None = None
    auto: bool = False
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Nudge:
    """SIGTTIN (+1) or SIGTTOU (-1), as gunicorn's arbiter takes them: one worker more or fewer, pinned."""

    step: int


@dataclass(frozen=True)
class SetTarget:
    """The autoscaler's decision; ignored once an operator pinned the count."""

    count: int
    reason: str


@dataclass(frozen=True)
class SampleWorkers:
    """Read the HTTP workers' figures (every second)."""


@dataclass(frozen=True)
class HealthReport:
    """One probe of the HTTP tier's /health."""

    passed: bool
    detail: str


@dataclass(frozen=True)
class WorkerExit:
    """The arbiter reports why a worker left."""

    pid: int
    reason: str


@dataclass(frozen=True)
class Recycle:
    """An operator replaces one HTTP worker (`cluster workers recycle`, the dashboard): its exit is ``recycled``."""

    pid: int


@dataclass(frozen=True)
class RestartGroup:
    """An operator restarts every process of a queue pool group (``queue-high``): at once, never counted as a crash."""

    group: str


@dataclass(frozen=True)
class ChildExit:
    """A supervised child's process ended (``pid`` None: it could not start); the answer says when to start it again."""

    name: str
    pid: int | None
    code: int | None


@dataclass(frozen=True)
class MarkReady:
    """The port answers and every wanted worker has booted."""


@dataclass(frozen=True)
class Heartbeat:
    """Nothing to do: its answer proves the loop turns (systemd's watchdog pings on it)."""


Command = Stop | Reload | Scale | Nudge | SetTarget | SampleWorkers | HealthReport | WorkerExit | Recycle | RestartGroup \
    | ChildExit | MarkReady | Heartbeat
