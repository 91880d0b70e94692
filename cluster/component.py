"""The narrow interfaces between the supervisor and the features that run inside it.

A feature (autoscaler, monitor, queue tier...) is a ``Component``; it sees the
supervisor only as a ``Host``: read-only figures, and requests that go through
the supervisor's command loop. Defined here, outside ``cluster.supervisor``, so
the features never import the supervisor (an import-linter contract).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from cluster.config import Settings


class Host(Protocol):
    """What a component may read of the supervisor and ask of it."""

    @property
    def settings(self) -> "Settings":
        """The effective settings: immutable, replaced as a whole by a reload or a change of bounds."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def metrics_dir(self) -> Path: ...

    def scale_status(self) -> dict[str, Any]:
        """current, target, min, max and mode of the HTTP workers."""

    def worker_pids(self) -> list[int]: ...

    def workers_crash_looping(self) -> bool:
        """Whether the arbiter reported too many worker failures lately (or the arbiter itself crash-loops)."""

    def process_rows(self) -> list[dict[str, Any]]:
        """One row per process (the supervisor, its children, the HTTP workers) with CPU and RSS."""

    async def set_target(self, count: int, reason: str) -> int:
        """Ask for ``count`` HTTP workers (an autoscaling decision); returns the target now in force."""


class Component(Protocol):
    """A feature run inside the supervisor; started in order, stopped in reverse."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def reload(self) -> None:
        """The host's settings were just replaced by a reload: take what applies without a restart."""

    def status(self) -> dict[str, Any]: ...

    def add_control_routes(self, app: "web.Application") -> None: ...
