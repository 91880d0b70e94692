"""The supervisor: one asyncio process per host that owns every child and the cluster's state.

It starts the HTTP tier (gunicorn's arbiter) and the other children, keeps
them alive, samples the workers, health-checks the tier, serves the control
API on ``<state_dir>/control.sock`` and speaks systemd's notify protocol.
Features (autoscaler, queues, monitor...) plug in as components.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from cluster.supervisor import control

from cluster.supervisor import sd_notify
from cluster.supervisor.children import ChildSpec, SupervisedChild
from cluster.supervisor.health import HealthChecker, probe
from cluster.arbiter.http_tier import write_target
from cluster.supervisor.http_workers import HttpWorkers
from cluster.supervisor.restart_policy import RestartPolicy
from config import ConfigError, LoadedConfig, Settings, load
from workers.control_client import socket_path

log = logging.getLogger("cluster.supervisor.core")
SAMPLE_EVERY = 1.0


class Component(Protocol):
    """A feature run inside the supervisor (autoscaler, queue pools, monitor...)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def add_control_routes(self, app: web.Application) -> None: ...


class SupervisorError(Exception):
    """The supervisor cannot start (another one runs, the state dir is unusable...)."""


class Supervisor:
    def __init__(self, loaded: LoadedConfig, load_args: dict[str, Any] | None = None) -> None:
        self.loaded = loaded
        self.settings: Settings = loaded.settings
        self.load_args = load_args or {}
        self.state_dir = Path(self.settings.server.state_dir).resolve()
        self.settings = self.settings.model_copy(
            update={"server": self.settings.server.model_copy(update={"state_dir": str(self.state_dir)})}
        )
        self.started = time.time()
        self.http_workers = HttpWorkers()
        self.health = HealthChecker(self)
        self.children: dict[str, SupervisedChild] = {}
        self.components: list[Component] = []
        self.worker_target = self.settings.workers.min
        self.scale_mode = "auto" if self.settings.workers.min < self.settings.workers.max else "fixed"
        self.ready = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._control: web.AppRunner | None = None

    # -- paths and child specs -------------------------------------------------

    @property
    def settings_path(self) -> Path:
        return self.state_dir / "settings.json"

    @property
    def metrics_dir(self) -> Path:
        return self.state_dir / "metrics"

    def child_env(self, role: str) -> dict[str, str]:
        """The environment every child gets: ours plus the metrics dir and its role."""
        env = dict(os.environ)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        env["CLUSTER_PROCESS_ROLE"] = role
        env.pop("NOTIFY_SOCKET", None)
        return env

    def restart_policy(self) -> RestartPolicy:
        r = self.settings.restart
        return RestartPolicy(r.backoff_initial, r.backoff_max, r.crash_loop_deaths, r.crash_loop_window)

    def add_child(self, spec: ChildSpec) -> SupervisedChild:
        """Supervise one more child (started by `start_children` or at once when running)."""
        child = SupervisedChild(spec, self.restart_policy())
        self.children[spec.name] = child
        return child

    @property
    def http_child(self) -> SupervisedChild:
        return self.children["http"]

    # -- lifecycle -------------------------------------------------------------

    def _prepare_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        sock = socket_path(self.state_dir)
        if sock.exists():
            if _socket_answers(sock):
                raise SupervisorError(f"a supervisor already runs with state dir {self.state_dir} ({sock} answers)")
            sock.unlink()
        # Metric files of a previous run would be summed into this one's.
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.metrics_dir.mkdir(mode=0o700)
        self.write_settings()
        write_target(self.state_dir, self.worker_target)

    def write_settings(self) -> None:
        tmp = self.settings_path.with_suffix(".tmp")
        tmp.write_text(self.settings.model_dump_json(indent=1))
        os.replace(tmp, self.settings_path)

    async def run(self) -> int:
        """Run until stopped; returns the exit status."""
        self._prepare_state_dir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))

        self.add_child(ChildSpec(
            name="http",
            group="http",
            argv=[sys.executable, "-m", "cluster.arbiter.http_tier", str(self.settings_path)],
            env=self.child_env("http-arbiter"),
            stop_timeout=self.settings.server.graceful_timeout + 5,
        ))
        self._control = await control.start(self, socket_path(self.state_dir))
        log.info(
            "supervisor started",
            extra={"state_dir": str(self.state_dir), "bind": self.settings.server.bind, "workers": self.worker_target},
        )
        for component in self.components:
            await component.start()
        for child in self.children.values():
            child.start()
        self._tasks = [
            asyncio.create_task(self._sample_loop(), name="sample-workers"),
            asyncio.create_task(self.health.run(), name="health"),
            asyncio.create_task(self._announce_ready(), name="ready"),
        ]
        await self._stop.wait()
        await self.shutdown()
        return 0

    async def _announce_ready(self) -> None:
        """READY=1 once the port answers and every wanted worker has booted."""
        while not self._stop.is_set():
            passed, _ = await probe(self.settings.server.bind[0], self.settings.health.timeout)
            if passed and len(self.http_workers.last) >= self.worker_target:
                break
            await asyncio.sleep(0.2)
        self.ready = True
        sd_notify.notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving with {self.worker_target} workers")
        log.info("cluster ready", extra={"workers": len(self.http_workers.last), "bind": self.settings.server.bind})

    async def _sample_loop(self) -> None:
        while True:
            self.http_workers.refresh(self.http_child.pid)
            await asyncio.sleep(SAMPLE_EVERY)

    def request_stop(self, reason: str = "request") -> None:
        if not self._stop.is_set():
            log.info("stopping (%s)", reason)
            self._stop.set()

    async def shutdown(self) -> None:
        sd_notify.notify("STOPPING=1")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for component in reversed(self.components):
            try:
                await component.stop()
            except Exception:
                log.exception("component %s failed to stop", component.name)
        await asyncio.gather(*(child.stop() for child in self.children.values()))
        if self._control is not None:
            await self._control.cleanup()
        socket_path(self.state_dir).unlink(missing_ok=True)
        log.info("supervisor stopped")

    # -- operations ------------------------------------------------------------

    def set_worker_target(self, count: int, reason: str) -> int:
        """Ask the arbiter for ``count`` workers, clamped to [min, max]; returns the target."""
        bounds = self.settings.workers
        target = max(bounds.min, min(bounds.max, count))
        if target != self.worker_target:
            log.info(
                "worker target %d -> %d: %s", self.worker_target, target, reason,
                extra={"from": self.worker_target, "to": target, "reason": reason},
            )
            self.worker_target = target
            write_target(self.state_dir, target)
        return target

    def scale(self, workers: int | None = None, auto: bool = False,
              minimum: int | None = None, maximum: int | None = None) -> dict[str, Any]:
        """`cluster scale`: pin a count (manual mode), return to auto, or move the bounds."""
        bounds = self.settings.workers
        new_min = bounds.min if minimum is None else minimum
        new_max = bounds.max if maximum is None else maximum
        if new_min < 1 or new_min > new_max:
            raise ValueError(f"bounds min={new_min} max={new_max}: need 1 <= min <= max")
        if workers is not None and not new_min <= workers <= new_max:
            raise ValueError(f"{workers} workers is outside [{new_min}, {new_max}]: move the bounds with --min/--max")
        if (new_min, new_max) != (bounds.min, bounds.max):
            self.settings = self.settings.model_copy(
                update={"workers": bounds.model_copy(update={"min": new_min, "max": new_max})}
            )
            self.write_settings()
        if workers is not None:
            self.scale_mode = "manual"
            self.set_worker_target(workers, "manual scale")
        else:
            if auto or (self.scale_mode == "fixed" and new_min < new_max):
                self.scale_mode = "auto"
            self.set_worker_target(self.worker_target, "bounds changed")
        return self.scale_status()

    def scale_status(self) -> dict[str, Any]:
        return {
            "current": len(self.http_workers.last),
            "target": self.worker_target,
            "min": self.settings.workers.min,
            "max": self.settings.workers.max,
            "mode": self.scale_mode,
        }

    async def reload(self) -> dict[str, Any]:
        """Re-read the configuration; if valid, gracefully replace the HTTP workers with it."""
        sd_notify.notify("RELOADING=1")
        try:
            fresh = load(**self.load_args)
        except ConfigError as exc:
            log.error("reload refused: the configuration is invalid", extra={"problems": exc.problems})
            sd_notify.notify("READY=1")
            return {"reloaded": False, "problems": exc.problems}
        # Kept from the running configuration: the worker bounds (moved at
        # runtime by `cluster scale`) and Redis (the queue tier settled its URL,
        # embedded or given, at start; its pools keep their connections).
        settings = fresh.settings.model_copy(update={
            "server": fresh.settings.server.model_copy(update={"state_dir": str(self.state_dir)}),
            "workers": self.settings.workers,
            "redis": self.settings.redis,
        })
        self.settings = settings
        self.loaded = fresh
        self.write_settings()
        self.http_child.send_signal(signal.SIGHUP)
        for component in self.components:
            reload = getattr(component, "reload", None)
            if reload is not None:
                await reload()
        log.info("reloaded", extra={"workers": self.worker_target})
        sd_notify.notify("READY=1")
        return {"reloaded": True, "problems": []}

    def status(self) -> dict[str, Any]:
        rows = [self.children[name].status() for name in self.children]
        rows[1:1] = self.http_workers.rows()
        body: dict[str, Any] = {
            "supervisor": {
                "pid": os.getpid(),
                "uptime": round(time.time() - self.started, 1),
                "state_dir": str(self.state_dir),
                "bind": self.settings.server.bind,
                "ready": self.ready,
            },
            "workers": {**self.scale_status(), "exits": self.http_workers.exits},
            "processes": rows,
            "health": self.health.status(),
        }
        for component in self.components:
            body[component.name] = component.status()
        return body


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True
