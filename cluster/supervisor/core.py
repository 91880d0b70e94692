"""The supervisor: one asyncio process per host that owns every child and the cluster's state.

It starts the HTTP tier (gunicorn's arbiter) and the other children, keeps
them alive, samples the workers, health-checks the tier, serves the control
API on ``<state_dir>/control.sock`` and speaks systemd's notify protocol.
Features (autoscaler, queues, monitor...) plug in as components.

Like gunicorn's arbiter, it has one loop that changes its state: signal
handlers, control-API handlers, the periodic tasks (sampling, health
probes, the autoscaler, the arbiter's exit reports) and the children, when
their process ends, only put commands
(``cluster.supervisor.commands``) on a queue (``cluster.supervisor.command_loop``),
which hands them one at a time, in order, to the ``handle_*`` methods below
and sets each result on the caller's future. Bounds, target and mode are
``WorkerRuntime`` (``cluster.supervisor.scaling``, pure).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from cluster.arbiter import socket_activation
from cluster.arbiter.exits import EXITS_SOCKET
from cluster.config import state_files
from cluster.supervisor.announce import SystemdAnnouncer
from cluster.supervisor.logfiles import reopen_logs
from cluster.component import Component
from cluster.supervisor import control, first_boot, leftovers, preflight, takeover
from cluster.supervisor.exposure import warn_if_exposed
from cluster.supervisor.state_dir import located, private_subdir
from cluster.supervisor.state_dir import prepare as prepare_state_dir
from cluster.safe_files import write_file
from cluster.supervisor.db_health import with_view
from cluster.supervisor.children import ChildSpec, ExitReport, SupervisedChild
from cluster.supervisor.command_loop import CommandLoop
from cluster.supervisor.commands import ChildExit, Command, HealthReport, Heartbeat, MarkReady, Nudge, Recycle, \
    Reload, RestartGroup, SampleWorkers, Scale, SetTarget, Stop, WorkerExit
from cluster.supervisor.health import HealthState, over_limits, probe
from cluster.supervisor.http_workers import HttpWorkers
from cluster.supervisor.restart_policy import RestartDecision, RestartPolicy
from cluster.supervisor.scaling import WorkerRuntime, autoscaled, nudge, rescale
from cluster.supervisor.status import ProcessRows
from cluster.supervisor.worker_exits import ExitTally, as_requested, listen
from cluster.config import ConfigError, LoadedConfig, Settings, load
from cluster.workers.control_client import socket_path

log = logging.getLogger("cluster.supervisor.core")
SAMPLE_EVERY = 1.0


class SupervisorError(Exception):
    """The supervisor cannot start (another one runs, the state dir is unusable...)."""


class Supervisor:
    def __init__(self, loaded: LoadedConfig, load_args: dict[str, Any] | None = None) -> None:
        self.loaded = loaded
        self.load_args = load_args or {}
        self.state_dir = located(loaded.settings.server.state_dir)  # a link is refused before it is resolved
        bounds = loaded.settings.workers
        self.runtime = WorkerRuntime.initial(bounds.min, bounds.max)
        self._base = loaded.settings
        # Socket activation: serve (and probe) the sockets systemd passed, whatever bind says.
        self.listen_fds = socket_activation.inherited(os.environ, os.getpid())
        self._settings = self._effective()
        self.started = time.time()
        self.http_workers = HttpWorkers()
        self.health = HealthState(self._settings.health.failures_before_reload)
        restart = self._settings.restart
        self.exits = ExitTally(restart.crash_loop_deaths, restart.crash_loop_window)
        self.children: dict[str, SupervisedChild] = {}
        self._restart_policies: dict[str, RestartPolicy] = {}
        # What an operator asked for, keyed by pid and marked before the signal, so the exit that
        # follows is known as such: HTTP workers being recycled, children (by name) being restarted.
        self._recycling: set[int] = set()
        self._restarting: dict[str, int] = {}
        self.components: list[Component] = []
        self.ready = False
        self._rows = ProcessRows(self.started)
        self._commands = CommandLoop({
            Stop: self.handle_stop,
            Reload: self.handle_reload,
            Scale: self.handle_scale,
            Nudge: self.handle_nudge,
            SetTarget: self.handle_set_target,
            SampleWorkers: self.handle_sample,
            HealthReport: self.handle_health,
            WorkerExit: self.handle_worker_exit,
            Recycle: self.handle_recycle,
            RestartGroup: self.handle_restart_group,
            ChildExit: self.handle_child_exit,
            MarkReady: self.handle_ready,
            Heartbeat: self.handle_heartbeat,
        })
        self._tasks: list[asyncio.Task[Any]] = []
        self._control: web.AppRunner | None = None
        # Set by first_boot when the HTTP tier dies before READY: `cluster start` exits with it.
        self.failure: str | None = None
        self.exit_code = 0
        self._exit_reports: asyncio.DatagramTransport | None = None
        self.systemd = SystemdAnnouncer(self)

    # -- settings and paths ----------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The effective settings: the loaded ones with the state dir resolved and the runtime bounds."""
        return self._settings

    def _effective(self) -> Settings:
        base, runtime = self._base, self.runtime
        server: dict[str, Any] = {"state_dir": str(self.state_dir)}
        if self.listen_fds:
            server["bind"] = socket_activation.bind_addresses(self.listen_fds)
        return with_view(base.model_copy(update={
            "server": base.server.model_copy(update=server),
            "workers": base.workers.model_copy(update={"min": runtime.minimum, "max": runtime.maximum}),
        }), self.state_dir)

    def _use_settings(self, base: Settings) -> None:
        """The one place the settings change (reload, settled Redis URL, new bounds); rewrites the file."""
        self._base = base
        self._settings = self._effective()
        self.write_settings()

    def settle_redis_url(self, url: str) -> None:
        """The queue tier's Redis URL (given or embedded), before any child reads the settings file."""
        self._use_settings(self._base.model_copy(update={"redis": self._base.redis.model_copy(update={"url": url})}))

    @property
    def worker_target(self) -> int:
        return self.runtime.target

    @property
    def scale_mode(self) -> str:
        return self.runtime.mode

    @property
    def settings_path(self) -> Path:
        return state_files.SETTINGS.path(self.state_dir)

    @property
    def metrics_dir(self) -> Path:
        return self.state_dir / "metrics"

    def child_env(self, role: str) -> dict[str, str]:
        """The environment every child gets: ours plus the metrics dir and its role."""
        env = socket_activation.hand_on(os.environ, self.listen_fds) if role == "http-arbiter" \
            else socket_activation.without(os.environ)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        env["CLUSTER_PROCESS_ROLE"] = role
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        return env

    def restart_policy(self) -> RestartPolicy:
        r = self.settings.restart
        return RestartPolicy(r.backoff_initial, r.backoff_max, r.crash_loop_deaths, r.crash_loop_window)

    def add_child(self, spec: ChildSpec,
                  make: Callable[[ChildSpec, ExitReport], SupervisedChild] = SupervisedChild) -> SupervisedChild:
        """Supervise one more child (started by `run` or at once when running); ``make`` builds its handle.

        Its exits come to the command loop (``ChildExit``), where its restart policy decides.
        """
        child = make(spec, self._report_child_exit)
        self.children[spec.name] = child
        self._restart_policies[spec.name] = self.restart_policy()
        return child

    async def _report_child_exit(self, child: SupervisedChild, pid: int | None,
                                 code: int | None) -> RestartDecision | None:
        """A child's exit, handed to the loop; None (no restart) once the loop is over: we are stopping."""
        decided = self.submit(ChildExit(child.spec.name, pid, code))
        await asyncio.wait({decided})
        return None if decided.cancelled() or decided.exception() else decided.result()

    @property
    def http_child(self) -> SupervisedChild:
        return self.children["http"]

    # -- lifecycle -------------------------------------------------------------

    def _claim_state_dir(self) -> None:
        prepare_state_dir(self.state_dir)
        sock = socket_path(self.state_dir)
        if sock.exists():
            if leftovers.supervisor_answers(self.state_dir):
                raise SupervisorError(f"a supervisor already runs with state dir {self.state_dir} ({sock} answers)")
            sock.unlink()

    async def _take_over(self) -> None:
        """A previous supervisor of this state dir died: wait, bounded, until its tree releases our ports."""
        binds = preflight.tcp_binds(self.settings, socket_activated=bool(self.listen_fds))
        server = self.settings.server
        problem = await leftovers.ports_released(lambda: preflight.in_use(binds), self.state_dir,
                                                 takeover.wait_limit(server.keepalive, server.graceful_timeout))
        if problem:
            raise SupervisorError(problem)

    def _prepare_state_dir(self) -> None:
        # Metric files of a previous run would be summed into this one's.
        shutil.rmtree(self.metrics_dir, ignore_errors=True)  # rmtree refuses a link: private_subdir then does
        private_subdir(self.state_dir, self.metrics_dir.name)
        self.write_settings()
        state_files.write_target(self.state_dir, self.runtime.target)

    def write_settings(self) -> None:
        write_file(self.settings_path, self.settings.model_dump_json(indent=1), mode=0o600)

    async def run(self) -> int:
        """Run until stopped; returns the exit status."""
        self._claim_state_dir()
        await self._take_over()  # before the metrics dir is emptied: the old tree writes there until it exits
        self._prepare_state_dir()
        warn_if_exposed(self.settings)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.post, Reload("SIGHUP"))
        loop.add_signal_handler(signal.SIGTTIN, self.post, Nudge(+1))
        loop.add_signal_handler(signal.SIGTTOU, self.post, Nudge(-1))
        loop.add_signal_handler(signal.SIGUSR1, lambda: reopen_logs(self.children.values()))

        self.add_child(ChildSpec(
            name="http",
            group="http",
            argv=[sys.executable, "-m", "cluster.arbiter.http_tier", str(self.settings_path)],
            env=self.child_env("http-arbiter"),
            stop_timeout=self.settings.server.graceful_timeout + 5,
            pass_fds=self.listen_fds,
        ))
        self._exit_reports = await listen(
            self.state_dir / EXITS_SOCKET, lambda pid, reason: self.post(WorkerExit(pid, reason)))
        self._control = await control.start(self, self.components, socket_path(self.state_dir))
        log.info(
            "supervisor started",
            extra={"state_dir": str(self.state_dir), "bind": self.settings.server.bind, "workers": self.worker_target},
        )
        for component in self.components:
            await component.start()
        for child in self.children.values():
            child.start()
        self._tasks = [
            asyncio.create_task(self._every(SAMPLE_EVERY, SampleWorkers), name="sample-workers"),
            asyncio.create_task(self._probe_health(), name="health"),
            asyncio.create_task(self.systemd.run(), name="systemd"),
            asyncio.create_task(first_boot.watch(self), name="first-boot"),
        ]
        await self._commands.run(until=Stop)
        await self.shutdown()
        return self.exit_code

    async def shutdown(self) -> None:
        self.systemd.stopping()
        self._commands.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Stop in order: the HTTP tier drains first, while the queues and Redis still serve it.
        await self.http_child.stop()
        for component in reversed(self.components):
            try:
                await component.stop()
            except Exception:
                log.exception("component %s failed to stop", component.name)
        await asyncio.gather(*(child.stop() for child in self.children.values()))
        if self._exit_reports is not None:
            self._exit_reports.close()
        (self.state_dir / EXITS_SOCKET).unlink(missing_ok=True)
        if self._control is not None:
            await self._control.cleanup()
        socket_path(self.state_dir).unlink(missing_ok=True)
        log.info("supervisor stopped")

    # -- the command loop --------------------------------------------------------

    def submit(self, command: Command) -> asyncio.Future[Any]:
        """Queue a command for the loop; the future gets its result (cancelled once the loop is over)."""
        return self._commands.submit(command)

    def post(self, command: Command) -> None:
        """Queue a command nobody waits for (signals, exit reports); its failure is logged by the loop."""
        self._commands.post(command)

    async def _every(self, interval: float, command: Callable[[], Command]) -> None:
        while True:
            await self.submit(command())
            await asyncio.sleep(interval)

    async def _probe_health(self) -> None:
        """Probe in this task (I/O); what a result means is decided in the loop (`handle_health`)."""
        while True:
            await asyncio.sleep(self.settings.health.interval)
            passed, detail = await probe(self.settings.server.bind[0], self.settings.health.timeout)
            await self.submit(HealthReport(passed, detail))

    # -- requests ------------------------------------------------------------------

    def request_stop(self, reason: str = "request") -> None:
        self.post(Stop(reason))

    async def reload(self) -> dict[str, Any]:
        """Re-read the configuration; if valid, gracefully replace the HTTP workers with it."""
        result: dict[str, Any] = await self.submit(Reload("request"))
        return result

    async def scale(self, workers: int | None = None, auto: bool = False,
                    minimum: int | None = None, maximum: int | None = None) -> dict[str, Any]:
        """`cluster scale`: pin a count (manual mode), return to auto, or move the bounds."""
        result: dict[str, Any] = await self.submit(Scale(workers, auto, minimum, maximum))
        return result

    async def set_target(self, count: int, reason: str) -> int:
        """An autoscaling decision (``Host``): applied unless an operator pinned the count meanwhile."""
        target: int = await self.submit(SetTarget(count, reason))
        return target

    # -- handlers: run only by the command loop ---------------------------------------

    async def handle_stop(self, command: Stop) -> dict[str, Any]:
        log.info("stopping (%s)", command.reason)
        return {"stopping": True, "pid": os.getpid()}

    async def handle_reload(self, command: Reload) -> dict[str, Any]:
        old_generation = self.systemd.reloading()
        try:
            fresh = load(**self.load_args)
        except ConfigError as exc:
            log.error("reload refused: the configuration is invalid",
                      extra={"problems": exc.problems, "reason": command.reason})
            self.systemd.reload_refused()
            return {"reloaded": False, "problems": exc.problems}
        # Kept from the running configuration: the worker bounds (runtime
        # state, moved by `cluster scale`) and Redis (the queue tier settled
        # its URL, embedded or given, at start; its pools keep their connections).
        self.loaded = fresh
        self._use_settings(fresh.settings.model_copy(update={"redis": self._base.redis}))
        self.http_child.send_signal(signal.SIGHUP)
        for component in self.components:
            await component.reload()
        log.info("reloaded", extra={"workers": self.worker_target, "reason": command.reason})
        self.systemd.reloaded(old_generation)
        return {"reloaded": True, "problems": []}

    async def handle_scale(self, command: Scale) -> dict[str, Any]:
        self._use_runtime(rescale(self.runtime, command.workers, command.auto, command.minimum, command.maximum),
                          "manual scale" if command.workers is not None else "bounds changed")
        return self.scale_status()

    async def handle_nudge(self, command: Nudge) -> dict[str, Any]:
        self._use_runtime(nudge(self.runtime, command.step), "SIGTTIN" if command.step > 0 else "SIGTTOU")
        return self.scale_status()

    async def handle_set_target(self, command: SetTarget) -> int:
        self._use_runtime(autoscaled(self.runtime, command.count), command.reason)
        return self.runtime.target

    async def handle_sample(self, command: SampleWorkers) -> None:
        self.http_workers.refresh(self.http_child.pid)

    async def handle_health(self, command: HealthReport) -> None:
        started = self.http_child.started_at
        booting = started is None or time.time() - started < self.settings.server.boot_grace
        if self.health.record(command.passed, command.detail, booting):
            log.error("health probe failed %d times: reloading the HTTP tier",
                      self.settings.health.failures_before_reload)
            self.http_child.send_signal(signal.SIGHUP)
        elif not command.passed:
            log.warning("health probe failed (%d in a row%s): %s", self.health.consecutive_failures,
                        ", the HTTP tier is booting" if booting else "", command.detail)
        for pid, why in over_limits(self.http_workers.last, self.settings.workers.max_worker_memory_mb):
            if pid not in self._recycling and self._recycle(pid, why, logging.WARNING):
                self.health.recycled += 1

    async def handle_recycle(self, command: Recycle) -> bool:
        """An operator's recycle; False when ``pid`` is no running HTTP worker."""
        return command.pid in self.worker_pids() and self._recycle(command.pid, "on request", logging.INFO)

    def _recycle(self, pid: int, why: str, level: int) -> bool:
        """Replace one HTTP worker; its exit report, handled after this, is then counted as ``recycled``."""
        self._recycling.add(pid)  # before the signal: the worker may be gone before we look again
        try:
            # SIGTERM is gunicorn's graceful stop for one worker: in-flight
            # requests finish, and the arbiter forks a replacement.
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self._recycling.discard(pid)
            return False
        log.log(level, "recycling http worker %s: %s", pid, why, extra={"worker_pid": pid})
        return True

    async def handle_restart_group(self, command: RestartGroup) -> list[str]:
        """Restart every running process of a queue pool group: the names signalled (none: no such group)."""
        signalled = []
        for name, child in self.children.items():
            if child.spec.group != command.group or not command.group.startswith("queue-") or child.pid is None:
                continue
            self._restarting[name] = child.pid  # before the signal, as for a recycle
            if child.send_signal(signal.SIGTERM):
                signalled.append(name)
            else:
                del self._restarting[name]
        log.info("restarting queue pool %s", command.group, extra={"group": command.group, "processes": signalled})
        return signalled

    async def handle_child_exit(self, command: ChildExit) -> RestartDecision | None:
        """A child's process ended: its restart policy says when it starts again (None: it is stopping)."""
        child = self.children[command.name]
        if child.state in ("stopping", "stopped"):
            return None
        requested = command.pid is not None and self._restarting.get(command.name) == command.pid
        self._restarting.pop(command.name, None)
        policy, now = self._restart_policies[command.name], time.monotonic()
        decision = policy.requested_exit(now) if requested else policy.record_death(now)
        child.exited(command.code, decision)
        if child is self.http_child:
            self._recycling.clear()  # its workers are gone with it, reported or not
        return decision

    async def handle_worker_exit(self, command: WorkerExit) -> None:
        reason = as_requested(command.reason, command.pid in self._recycling)
        self._recycling.discard(command.pid)
        self.exits.record(reason, time.monotonic())
        level = logging.WARNING if reason in ("crashed", "timeout") else logging.INFO
        log.log(level, "http worker %s left: %s", command.pid, reason,
                extra={"worker_pid": command.pid, "reason": reason})

    async def handle_ready(self, command: MarkReady) -> None:
        self.ready = True
        self.systemd.announce_ready()  # READY=1, and the ready line with every address

    async def handle_heartbeat(self, command: Heartbeat) -> None:
        """The loop turns: the systemd watchdog pings once this is answered."""

    def _use_runtime(self, runtime: WorkerRuntime, reason: str) -> None:
        """Adopt new bounds, target and mode: the settings file for new bounds, the target file for the arbiter."""
        before, self.runtime = self.runtime, runtime
        if (runtime.minimum, runtime.maximum) != (before.minimum, before.maximum):
            self._use_settings(self._base)
        if runtime.target != before.target:
            log.info(
                "worker target %d -> %d: %s", before.target, runtime.target, reason,
                extra={"from": before.target, "to": runtime.target, "reason": reason},
            )
            state_files.write_target(self.state_dir, runtime.target)

    # -- what components and the control API read ---------------------------------------

    def scale_status(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "current": len(self.http_workers.last),
            "target": runtime.target,
            "min": runtime.minimum,
            "max": runtime.maximum,
            "mode": runtime.mode,
        }

    def worker_pids(self) -> list[int]:
        return [sample.pid for sample in self.http_workers.last]

    def workers_crash_looping(self) -> bool:
        return self.exits.crash_looping(time.monotonic()) or self.http_child.crash_loop

    def process_rows(self) -> list[dict[str, Any]]:
        """The supervisor's own row, then every child's and HTTP worker's."""
        return self._rows.supervisor_and_children(self.children, self.http_workers)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "supervisor": {
                "pid": os.getpid(),
                "uptime": round(time.time() - self.started, 1),
                "state_dir": str(self.state_dir),
                "bind": self.settings.server.bind,
                "ready": self.ready,
            },
            "workers": {**self.scale_status(), "exits": self.exits.total, "exit_reasons": dict(self.exits.by_reason)},
            "processes": self._rows.children(self.children, self.http_workers),
            "health": self.health.status(),
        }
        for component in self.components:
            body[component.name] = component.status()
        return body

