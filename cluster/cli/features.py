"""Which components run inside the supervisor, in start order (the composition root of `cluster start`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cluster.supervisor.core import Supervisor


def install(supervisor: "Supervisor") -> None:
    """Register every feature's component on a supervisor before it runs.

    The queue tier comes first: it settles the Redis URL every child reads.
    Each component gets the supervisor as its ``Host`` (``cluster.component``):
    figures to read, and requests that go through the command loop.
    """
    from cluster.autoscale.autoscaler import Autoscaler
    from cluster.dashboard.component import Dashboard
    from cluster.monitoring.monitor import Monitor
    from cluster.supervisor.db_health import DbHealth
    from cluster.supervisor.queue_tier import QueueTier

    dashboard = Dashboard(supervisor)
    supervisor.components.append(QueueTier(supervisor))
    supervisor.components.append(DbHealth(supervisor))
    supervisor.components.append(Autoscaler(supervisor))
    supervisor.components.append(Monitor(supervisor, listener_routes=[dashboard.add_listener_routes]))
    supervisor.components.append(dashboard)
