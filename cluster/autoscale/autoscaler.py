"""The autoscaler component: every ``sample_interval`` measure, ask the policy, apply the target.

The loop is thin: measuring lives in ``cluster.autoscale.signals``, deciding
in ``cluster.autoscale.policy`` (pure), applying is the supervisor's
``set_worker_target`` (the arbiter follows ``<state_dir>/http.target`` within
about a second and retires the least busy worker on a scale-down). The mode
and bounds stay the supervisor's (``cluster scale`` goes through its control
API); every tick adopts them before deciding.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cluster.autoscale import metrics as autoscale_metrics
from cluster.autoscale.policy import Decision, Sample, ScaleState, cooldown_remaining, current_penalty, decide, \
    external_change
from cluster.autoscale.signals import SystemCpu, UnexpectedExits, WorkerCpuMeter, bound_ports, free_memory_mb, \
    listen_backlog

if TYPE_CHECKING:
    from cluster.supervisor.core import Supervisor

log = logging.getLogger("cluster.autoscale.autoscaler")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class Autoscaler:
    name = "autoscaler"

    def __init__(self, supervisor: "Supervisor") -> None:
        self.supervisor = supervisor
        restart = supervisor.settings.restart
        bounds = supervisor.settings.workers
        self.state = ScaleState(supervisor.worker_target, bounds.min, bounds.max, self._mode())
        self.worker_cpu = WorkerCpuMeter()
        self.system_cpu = SystemCpu()
        self.exits = UnexpectedExits(restart.crash_loop_deaths, restart.crash_loop_window)
        self.sample: Sample | None = None
        self.decision: Decision | None = None
        self.decided_at: float | None = None
        self.last_change: dict[str, Any] | None = None
        self.events = {"up": 0, "down": 0}
        self._health_actions = (supervisor.health.recycled, supervisor.health.reloads)
        self._task: asyncio.Task[None] | None = None

    @property
    def settings(self) -> Any:
        return self.supervisor.settings.autoscale

    def _mode(self) -> str:
        return "manual" if self.supervisor.scale_mode == "manual" else "auto"

    async def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self._run(), name="autoscaler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def reload(self) -> None:
        # A reload replaces every worker: those exits are no crash.
        self.exits.expect(len(self.supervisor.http_workers.last))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sample_interval)
            try:
                self.tick(time.monotonic())
            except Exception:
                log.exception("autoscaler tick failed")

    def measure(self, now: float) -> Sample:
        sup = self.supervisor
        # Workers the health checker recycled, or replaced with a reload, did not crash.
        recycled, reloads = sup.health.recycled, sup.health.reloads
        self.exits.expect(recycled - self._health_actions[0])
        if reloads > self._health_actions[1]:
            self.exits.expect(len(sup.http_workers.last))
        self._health_actions = (recycled, reloads)
        workers = self.worker_cpu.measure([w.pid for w in sup.http_workers.last], self.settings.warmup, now)
        crashing = self.exits.observe(sup.http_workers.exits, now) or sup.http_child.crash_loop
        return Sample(
            at=now,
            mean_cpu=workers.mean,
            max_cpu=workers.max,
            system_cpu=self.system_cpu.measure(),
            free_memory_mb=free_memory_mb(),
            crash_looping=crashing,
            backlog=listen_backlog(bound_ports(sup.settings.server.bind)),
            measured=len(workers.per_worker),
            warming=workers.warming,
        )

    def tick(self, now: float) -> Decision:
        """One sample, one decision, applied."""
        sup = self.supervisor
        bounds = sup.settings.workers
        before = self.state.target
        self.state = external_change(self.state, sup.worker_target, bounds.min, bounds.max, self._mode(), now)
        self.exits.expect(before - self.state.target)
        self.sample = sample = self.measure(now)
        decision, self.state = decide(self.settings, self.state, sample)
        self.decision, self.decided_at = decision, time.time()
        autoscale_metrics.set_workers(len(sup.http_workers.last))
        if decision.changed:
            self._apply(decision, sample)
        else:
            log.debug("autoscale hold at %d: %s", decision.target, decision.reason)
        return decision

    def _apply(self, decision: Decision, sample: Sample) -> None:
        sup = self.supervisor
        old = sup.worker_target
        new = sup.set_worker_target(decision.target, f"autoscale: {decision.reason}")
        if decision.direction == "down":
            self.exits.expect(old - new)
        direction = decision.direction
        assert direction is not None
        self.events[direction] += 1
        autoscale_metrics.count_event(direction)
        self.last_change = {"at": time.time(), "from": old, "to": new, "direction": direction,
                            "reason": decision.reason}
        log.info(
            "autoscale %s %d -> %d: %s", direction, old, new, decision.reason,
            extra={
                "event": "autoscale", "direction": direction, "from": old, "to": new, "reason": decision.reason,
                "mean_cpu": _round(sample.mean_cpu), "max_cpu": _round(sample.max_cpu),
                "system_cpu": _round(sample.system_cpu),
            },
        )

    def status(self) -> dict[str, Any]:
        sup = self.supervisor
        now = time.monotonic()
        sample = self.sample
        return {
            "enabled": self.settings.enabled,
            "mode": sup.scale_mode if self.settings.enabled else "disabled",
            "current": len(sup.http_workers.last),
            "target": sup.worker_target,
            "min": sup.settings.workers.min,
            "max": sup.settings.workers.max,
            "cooldown_remaining": round(cooldown_remaining(self.settings, self.state, now), 1),
            "scale_down_penalty": current_penalty(self.settings, self.state, now),
            "last_decision": None if self.decision is None else {
                "at": self.decided_at,
                "target": self.decision.target,
                "direction": self.decision.direction,
                "reason": self.decision.reason,
            },
            "last_change": self.last_change,
            "signals": None if sample is None else {
                "mean_cpu": _round(sample.mean_cpu),
                "max_cpu": _round(sample.max_cpu),
                "system_cpu": _round(sample.system_cpu),
                "free_memory_mb": round(sample.free_memory_mb),
                "listen_backlog": sample.backlog,
                "crash_looping": sample.crash_looping,
            },
            "events": dict(self.events),
        }

    def add_control_routes(self, app: web.Application) -> None:
        """Nothing of its own: `cluster scale` goes through the supervisor's /scale."""
