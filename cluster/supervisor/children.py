"""A child process the supervisor keeps alive: spawn it, wait for its exit, report it, stop it cleanly.

The child does the process work only. Whether and when it starts again is
decided in the supervisor's command loop (``ChildExit`` -> ``RestartPolicy``),
which is also the only writer of the child's restart state (``exited``), as
gunicorn's arbiter reaps its workers in its own loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil

from cluster.supervisor.restart_policy import RestartDecision
from cluster.observability.metrics import CHILD_RESTARTS, mark_dead
from cluster.queues.process_control import PR_SET_PDEATHSIG, prctl

log = logging.getLogger("cluster.supervisor.children")


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies, so nothing is orphaned."""
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess(Protocol):
    """What the supervisor uses of a child process: asyncio's, or one the fork server forked for it."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def kill(self) -> None: ...


@dataclass
class ChildSpec:
    name: str
    group: str
    argv: list[str]
    env: dict[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 10.0
    die_with_parent: bool = True
    """False for a child that must outlive a supervisor killed outright (the embedded redis-server)."""
    pass_fds: tuple[int, ...] = ()


ExitReport = Callable[["SupervisedChild", "int | None", "int | None"], Awaitable[RestartDecision | None]]
"""How a child tells its owner that its process (pid, None if it could not start) ended with a code; the
answer is when to start again, or None: no restart (the owner is stopping)."""


@dataclass
class SupervisedChild:
    """Keeps one child running until stopped; each exit is reported, and the owner's answer followed."""

    spec: ChildSpec
    report_exit: ExitReport
    process: ChildProcess | None = None
    started_at: float | None = None
    # Written by the owner's command loop alone (``exited``):
    waiting: str = "starting"
    """Why no process runs between two: ``backoff``, ``crash-loop``, ``restarting``."""
    restarts: int = 0
    last_exit: int | None = None
    crash_loop: bool = False
    exit_reasons: Counter[str] = field(default_factory=Counter)
    _stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    _stopped: bool = False
    _task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.returncode is None else None

    @property
    def state(self) -> str:
        if self._stopped:
            return "stopped"
        if self._stop_requested.is_set():
            return "stopping"
        return "running" if self.pid is not None else self.waiting

    def start(self) -> None:
        """Begin supervising (spawns at once)."""
        self._task = asyncio.create_task(self._supervise(), name=f"supervise-{self.spec.name}")

    async def _spawn(self) -> None:
        self.process = await self._start_process()
        self.started_at = time.time()
        log.info("started %s", self.spec.name, extra={"child": self.spec.name, "child_pid": self.process.pid})

    async def _start_process(self) -> ChildProcess:
        """A fresh process running ``spec.argv`` (a subclass may start it another way)."""
        return await asyncio.create_subprocess_exec(
            *self.spec.argv,
            env=self.spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent if self.spec.die_with_parent else None,
            # Its own session: a Ctrl-C (SIGINT to the terminal's group) reaches only the supervisor,
            # which stops the children in order.
            start_new_session=True,
            pass_fds=self.spec.pass_fds,
        )

    async def _run_once(self) -> tuple[int | None, int | None]:
        """Start the process and wait for its end: (pid, exit code), both None when it could not start."""
        try:
            await self._spawn()
        except OSError as exc:
            if not self._stop_requested.is_set():
                log.error("cannot start %s: %s", self.spec.name, exc, extra={"child": self.spec.name})
            return None, None
        assert self.process is not None
        if self._stop_requested.is_set():  # stop() came while it was starting, and could not signal it
            self.send_signal(self.spec.stop_signal)
        code = await self.process.wait()
        mark_dead(self.process.pid)
        return self.process.pid, code

    async def _supervise(self) -> None:
        while not self._stop_requested.is_set():
            pid, code = await self._run_once()
            if self._stop_requested.is_set():
                break
            decision = await self.report_exit(self, pid, code)
            if decision is None:
                break
            try:
                await asyncio.wait_for(self._stop_requested.wait(), decision.delay)
            except TimeoutError:
                pass

    def exited(self, code: int | None, decision: RestartDecision) -> None:
        """The owner's command loop decided on an exit: record it and log it (a crash as an error)."""
        self.last_exit = code
        self.exit_reasons[decision.reason] += 1
        self.crash_loop = decision.crash_loop
        self.restarts += 1
        CHILD_RESTARTS.labels(self.spec.name).inc()
        requested = decision.reason != "crashed"
        self.waiting = "restarting" if requested else "crash-loop" if decision.crash_loop else "backoff"
        level = logging.INFO if requested else logging.CRITICAL if decision.crash_loop else logging.ERROR
        log.log(
            level,
            "%s %s with %s; restarting in %.1fs%s",
            self.spec.name,
            "exited on request" if requested else "exited",
            code,
            decision.delay,
            " (crash loop)" if decision.crash_loop else "",
            extra={
                "child": self.spec.name,
                "exit_code": code,
                "reason": decision.reason,
                "restart_delay": decision.delay,
                "deaths_in_window": decision.deaths_in_window,
                "alert": "crash_loop" if decision.crash_loop and not requested else None,
            },
        )

    def send_signal(self, sig: int) -> bool:
        """Signal the child if it runs; False when it does not."""
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def descendants(self) -> list[psutil.Process]:
        if self.pid is None:
            return []
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    async def stop(self) -> int | None:
        """Stop for good: the stop signal, up to ``stop_timeout`` to exit, then SIGKILL.

        Descendants still alive once the child is gone are killed too, so a
        stop leaves no process behind.
        """
        self._stop_requested.set()
        process = self.process
        leftovers = self.descendants()
        if process is not None and process.returncode is None:
            self.send_signal(self.spec.stop_signal)
            try:
                await asyncio.wait_for(process.wait(), self.spec.stop_timeout)
            except TimeoutError:
                log.warning("%s did not stop in %.0fs; killing it", self.spec.name, self.spec.stop_timeout)
                leftovers = self.descendants() or leftovers
                process.kill()
                await process.wait()
        for proc in leftovers:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        if self._task is not None:
            await self._task
        self._stopped = True
        return process.returncode if process else None

    def status(self) -> dict[str, Any]:
        """A row for `cluster status` (the supervisor adds CPU and RSS)."""
        row: dict[str, Any] = {
            "group": self.spec.group,
            "name": self.spec.name,
            "pid": self.pid,
            "state": self.state,
            "uptime": round(time.time() - self.started_at, 1) if self.started_at and self.pid else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "exit_reasons": dict(self.exit_reasons),
            "crash_loop": self.crash_loop,
        }
        return row
