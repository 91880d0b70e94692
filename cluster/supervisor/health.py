"""Health of the HTTP tier: probe the workers' own probe path on the bound port; decide on reloads and worker recycling.

The probe is I/O and runs in its own task; what to do about its results is
decided here without I/O (``HealthState``, ``over_limits``) and done by the
supervisor's command loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from cluster.supervisor.http_workers import WorkerSample
from cluster.config.urls import bind_url
from cluster.workers.endpoints import PROBE_MARKER, PROBE_PATH


async def probe(bind: str, timeout: float) -> tuple[bool, str]:
    """One GET of the probe path (no user route can shadow it); (the tier answers, detail).

    Any health+json answer passes, even ``fail``: a worker that reports a
    critical health score or a down database is alive, and new workers would
    not fix what it reports. Only no answer, a timeout or a body that is not
    a health document counts against the tier.
    """
    url, unix = bind_url(bind, PROBE_PATH)
    connector = aiohttp.UnixConnector(path=unix) if unix else aiohttp.TCPConnector(force_close=True)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, headers={"X-Request-ID": "supervisor-health-probe"}) as response:
                if PROBE_MARKER not in response.headers:
                    return False, f"{response.status} without the {PROBE_MARKER} marker: not our workers"
                body = await response.json(content_type=None)
                status = body.get("status") if isinstance(body, dict) else None
                return status in ("pass", "warn", "fail"), f"{response.status} {status}"
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


@dataclass
class HealthState:
    """Probe results in a row; ``failures_before_reload`` failures call for a graceful reload.

    Hung workers are gunicorn's to replace (heartbeat timeout); a reload
    replaces every worker and keeps the listening socket.
    """

    failures_before_reload: int
    consecutive_failures: int = 0
    last_probe: dict[str, Any] = field(default_factory=dict)
    recycled: int = 0
    reloads: int = 0

    def record(self, passed: bool, detail: str, booting: bool = False, at: float | None = None) -> bool:
        """Note one probe; True when the tier must be reloaded now.

        A failure while the arbiter is ``booting`` (younger than its boot
        grace) does not count: it is not serving yet, and a SIGHUP before
        gunicorn installs its handlers would kill it.
        """
        self.last_probe = {"passed": passed, "detail": detail, "at": time.time() if at is None else at}
        if passed or booting:
            self.consecutive_failures = 0
            return False
        self.consecutive_failures += 1
        if self.consecutive_failures < self.failures_before_reload:
            return False
        self.reloads += 1
        self.consecutive_failures = 0
        return True

    def status(self) -> dict[str, Any]:
        return {
            "last_probe": self.last_probe,
            "consecutive_failures": self.consecutive_failures,
            "recycled_workers": self.recycled,
            "reloads": self.reloads,
        }


def over_limits(samples: Iterable[WorkerSample], max_memory_mb: int | None) -> list[tuple[int, str]]:
    """(pid, why) of the workers to recycle: zombies, and those over the memory cap."""
    found = []
    for sample in samples:
        if sample.status == "zombie":
            found.append((sample.pid, "zombie"))
        elif max_memory_mb is not None and sample.rss_bytes > max_memory_mb * 1024 * 1024:
            found.append((sample.pid, f"RSS {sample.rss_bytes // (1024 * 1024)} MiB over "
                                      f"max_worker_memory_mb {max_memory_mb}"))
    return found
