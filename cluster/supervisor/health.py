"""Health checks of the HTTP tier: probe /health on the bound port, and check each worker process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from cluster.supervisor.core import Supervisor

log = logging.getLogger("cluster.supervisor.health")


def probe_target(bind: str, path: str = "/health") -> tuple[str, str | None]:
    """(URL of ``path``, unix socket path or None) for a gunicorn bind address."""
    if bind.startswith("unix:"):
        return f"http://localhost{path}", bind[len("unix:"):]
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}", None


async def probe(bind: str, timeout: float) -> tuple[bool, str]:
    """One GET /health; (the tier answers, detail).

    Any health+json answer passes, even ``fail``: a worker that reports a
    critical health score or a down database is alive, and new workers would
    not fix what it reports. Only no answer, a timeout or a body that is not
    a health document counts against the tier.
    """
    url, unix = probe_target(bind)
    connector = aiohttp.UnixConnector(path=unix) if unix else aiohttp.TCPConnector(force_close=True)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, headers={"X-Request-ID": "supervisor-health-probe"}) as response:
                body = await response.json(content_type=None)
                status = body.get("status") if isinstance(body, dict) else None
                return status in ("pass", "warn", "fail"), f"{response.status} {status}"
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


class HealthChecker:
    """Every interval: probe the port; recycle workers that are zombies or over their memory cap.

    Hung workers are gunicorn's to replace (heartbeat timeout). A port that
    fails ``failures_before_reload`` probes in a row gets a graceful reload:
    new workers, the listening socket kept.
    """

    def __init__(self, supervisor: "Supervisor") -> None:
        self.supervisor = supervisor
        self.consecutive_failures = 0
        self.last_probe: dict[str, Any] = {}
        self.recycled = 0
        self.reloads = 0

    async def check_once(self) -> bool:
        settings = self.supervisor.settings
        passed, detail = await probe(settings.server.bind[0], settings.health.timeout)
        self.last_probe = {"passed": passed, "detail": detail, "at": time.time()}
        if passed:
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
            log.warning("health probe failed (%d in a row): %s", self.consecutive_failures, detail)
            if self.consecutive_failures >= settings.health.failures_before_reload:
                log.error("health probe failed %d times: reloading the HTTP tier", self.consecutive_failures)
                self.reloads += 1
                self.consecutive_failures = 0
                self.supervisor.http_child.send_signal(signal.SIGHUP)
        self._check_workers()
        return passed

    def _check_workers(self) -> None:
        cap = self.supervisor.settings.workers.max_worker_memory_mb
        for sample in self.supervisor.http_workers.last:
            reason = None
            if sample.status == "zombie":
                reason = "zombie"
            elif cap is not None and sample.rss_bytes > cap * 1024 * 1024:
                reason = f"RSS {sample.rss_bytes // (1024 * 1024)} MiB over max_worker_memory_mb {cap}"
            if reason is None:
                continue
            log.warning("recycling http worker %s: %s", sample.pid, reason, extra={"worker_pid": sample.pid})
            try:
                # SIGTERM is gunicorn's graceful stop for one worker: in-flight
                # requests finish, and the arbiter forks a replacement.
                os.kill(sample.pid, signal.SIGTERM)
                self.recycled += 1
            except ProcessLookupError:
                pass

    async def run(self) -> None:
        interval = self.supervisor.settings.health.interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_once()
            except Exception:
                log.exception("health check failed unexpectedly")

    def status(self) -> dict[str, Any]:
        return {
            "last_probe": self.last_probe,
            "consecutive_failures": self.consecutive_failures,
            "recycled_workers": self.recycled,
            "reloads": self.reloads,
        }
