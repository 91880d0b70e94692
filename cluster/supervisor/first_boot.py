"""A start whose HTTP tier never boots ends, with the cause in one line, instead of restarting forever.

Until the cluster is ready an exit of the HTTP tier (gunicorn's arbiter
exits 3, "Worker failed to boot", or 1 when it cannot bind)
stops the supervisor with exit 1. After a good start a crash loop keeps the
usual backoff: that is the restart policy's business.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from cluster.config.state_files import BOOT_ERROR
from cluster.supervisor.children import SupervisedChild
from cluster.safe_files import read_file


class Booting(Protocol):
    """What the watch reads and sets of the supervisor."""

    state_dir: Path
    ready: bool
    failure: str | None
    exit_code: int

    @property
    def http_child(self) -> SupervisedChild: ...

    def request_stop(self, reason: str = ...) -> None: ...

log = logging.getLogger("cluster.supervisor.first_boot")
POLL = 0.1
EXIT_FAILED_BOOT = 1
GUNICORN_BOOT_ERROR = 3


def failure_message(exit_code: int | None, cause: str | None) -> str:
    """The one line `cluster start` ends with."""
    what = "a worker failed to boot" if exit_code == GUNICORN_BOOT_ERROR else f"it exited with {exit_code}"
    return f"the HTTP tier did not start ({what}): {cause or 'see the log above for the cause'}"


def read_cause(state_dir: Path) -> str | None:
    text = read_file(BOOT_ERROR.path(state_dir))  # a link reads as nothing: never through it
    cause = text.decode(errors="replace").strip() if text else ""
    return cause or None


def failed(exit_code: int | None) -> bool:
    """An exit status the HTTP tier gives when it cannot boot.

    Killed by a signal (negative) is not one: that came from outside (the OOM
    killer, a HUP before gunicorn's handlers were installed) and a restart may fix it.
    """
    return exit_code is not None and exit_code > 0


async def watch(supervisor: Booting) -> None:
    """Until READY: if the HTTP tier exits on its own, record the failure and ask the supervisor to stop."""
    BOOT_ERROR.path(supervisor.state_dir).unlink(missing_ok=True)
    child = supervisor.http_child
    while not supervisor.ready:
        process = child.process
        if process is not None and failed(process.returncode):
            supervisor.failure = failure_message(process.returncode, read_cause(supervisor.state_dir))
            supervisor.exit_code = EXIT_FAILED_BOOT
            log.error(supervisor.failure, extra={"exit_code": process.returncode})
            supervisor.request_stop("the HTTP tier failed its first boot")
            return
        await asyncio.sleep(POLL)
