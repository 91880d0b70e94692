"""SIGUSR1 to the supervisor: every process of the tree reopens its log file (after logrotate)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable

from cluster.supervisor.children import SupervisedChild
from cluster.observability.logs import reopen

log = logging.getLogger("cluster.supervisor.logfiles")
# redis-server writes to our stdout, not to the file, and SIGUSR1 is not its reopen signal.
NOT_FORWARDED = frozenset({"redis"})


def reopen_logs(children: Iterable[SupervisedChild]) -> None:
    """Reopen our file, then forward SIGUSR1 (gunicorn's arbiter passes it on to its workers)."""
    reopen()
    told = [child.spec.name for child in children
            if child.spec.group not in NOT_FORWARDED and child.send_signal(signal.SIGUSR1)]
    log.info("log files reopened", extra={"children": len(told)})
