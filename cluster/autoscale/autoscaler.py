"""The autoscaler component: every ``sample_interval`` measure, ask the policy, request the target.

The loop is thin: measuring lives in ``cluster.autoscale.signals``, deciding
in ``cluster.autoscale.policy`` (pure), applying is the supervisor's: the
decision goes through its command loop (``Host.set_target``), which holds
the one worker target, the bounds and the mode. The policy's state is
re-based on them at every tick (``external_change``), so an operator's
`cluster scale` is adopted before the next decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cluster.autoscale import metrics as autoscale_metrics
from cluster.autoscale.policy import Decision, Mode, Sample, ScaleState, cooldown_remaining, current_penalty, \
    decide, external_change
from cluster.autoscale.signals import SystemCpu, bound_ports, free_memory_mb, listen_backlog, worker_cpu
from cluster.observability.process import CpuMeter

if TYPE_CHECKING:
    from cluster.component import Host

log = logging.getLogger("cluster.autoscale.autoscaler")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _mode(scale_mode: str) -> Mode:
    return "manual" if scale_mode == "manual" else "auto"


class Autoscaler:
    name = "autoscaler"

    def __init__(self, host: "Host") -> None:
        self.host = host
        scale = host.scale_status()
        self.state = ScaleState(scale["target"], scale["min"], scale["max"], _mode(scale["mode"]))
        self.cpu = CpuMeter()
        self.system_cpu = SystemCpu()
        self.sample: Sample | None = None
        self.decision: Decision | None = None
        self.decided_at: float | None = None
        self.last_change: dict[str, Any] | None = None
        self.events = {"up": 0, "down": 0}
        self._task: asyncio.Task[None] | None = None

    @property
    def settings(self) -> Any:
        return self.host.settings.autoscale

    async def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self._run(), name="autoscaler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def reload(self) -> None:
        """The thresholds are read from the host's settings at every tick."""

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sample_interval)
            try:
                await self.tick(time.monotonic())
            except Exception:
                log.exception("autoscaler tick failed")

    def measure(self, now: float) -> Sample:
        host = self.host
        workers = worker_cpu(self.cpu.read(host.worker_pids(), now).values(), self.settings.warmup, time.time())
        return Sample(
            at=now,
            mean_cpu=workers.mean,
            max_cpu=workers.max,
            system_cpu=self.system_cpu.measure(),
            free_memory_mb=free_memory_mb(),
            crash_looping=host.workers_crash_looping(),
            backlog=listen_backlog(bound_ports(host.settings.server.bind)),
            measured=len(workers.per_worker),
            warming=workers.warming,
        )

    async def tick(self, now: float) -> Decision:
        """One sample, one decision, sent to the supervisor's loop."""
        scale = self.host.scale_status()
        self.state = external_change(self.state, scale["target"], scale["min"], scale["max"],
                                     _mode(scale["mode"]), now)
        self.sample = sample = self.measure(now)
        decision, self.state = decide(self.settings, self.state, sample)
        self.decision, self.decided_at = decision, time.time()
        autoscale_metrics.set_workers(scale["current"])
        if decision.changed:
            applied = await self.host.set_target(decision.target, f"autoscale: {decision.reason}")
            self._record(decision, sample, scale["target"], applied)
        else:
            log.debug("autoscale hold at %d: %s", decision.target, decision.reason)
        return decision

    def _record(self, decision: Decision, sample: Sample, old: int, new: int) -> None:
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
        scale = self.host.scale_status()
        now = time.monotonic()
        sample = self.sample
        return {
            "enabled": self.settings.enabled,
            **scale,
            "mode": scale["mode"] if self.settings.enabled else "disabled",
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
