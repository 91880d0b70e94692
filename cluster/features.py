"""Which components run inside the supervisor, in start order."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cluster.supervisor import Supervisor


def install(supervisor: "Supervisor") -> None:
    """Register every feature's component on a supervisor before it runs."""
    from cluster.queue_tier import QueueTier

    supervisor.components.append(QueueTier(supervisor))
