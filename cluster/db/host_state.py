"""One database host as the router sees it: its pool, its prober, its health and lag, its counters."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from cluster.config.settings import DatabaseSettings
from cluster.db import metrics
from cluster.db.freshness import format_lsn
from cluster.db.health_state import HostHealth
from cluster.db.hygiene import IdleCheck
from cluster.db.outlier import host_breaker
from cluster.db.hosts import HostSpec
from cluster.db.probe import Prober
from cluster.db.selection import HostView, ObservedRole
from cluster.db.transitions import HostRecord


class HostState:
    """One host: its pool, its prober, and what the last checks and requests said about it."""

    def __init__(self, spec: HostSpec, settings: DatabaseSettings) -> None:
        self.spec = spec
        self.name = spec.name
        idle = IdleCheck(settings.ping_after_idle)
        self.pool: AsyncConnectionPool = AsyncConnectionPool(
            spec.url, min_size=1, max_size=settings.pool_size, open=False, name=spec.name,
            timeout=settings.checkout_timeout, max_waiting=settings.pool_size * 8,
            reconnect_timeout=max(60.0, settings.health_check_interval * 4),
            max_lifetime=settings.max_lifetime, max_idle=settings.max_idle, check=idle.check,
            kwargs={"autocommit": True, "connect_timeout": max(2, round(settings.connect_timeout)),
                    "application_name": "cluster", "prepare_threshold": settings.prepare_threshold},
        )
        self.prober = Prober(spec.url, settings.connect_timeout)
        self.health = HostHealth()
        self.breaker = host_breaker(spec.name)  # ejects the host from reads while it keeps failing
        self.role: ObservedRole = spec.role  # as configured until the host says otherwise
        self.lsn: int | None = None
        self.lag_bytes: int | None = None
        self.lag_seconds: float | None = None
        self.fresh = spec.role == "replica"
        self.queries = 0
        self.errors = 0
        self.last_error: str | None = None
        self.checked_at: float | None = None
        self._query_metrics: dict[str, Any] = {}
        self._error_metric = metrics.ERRORS.labels(spec.name)

    def count_query(self) -> None:
        self.queries += 1
        child = self._query_metrics.get(self.role)
        if child is None:
            child = self._query_metrics[self.role] = metrics.QUERIES.labels(self.name, self.role)
        child.inc()

    def count_error(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {str(exc).strip()}"
        self._error_metric.inc()

    def load(self) -> int:
        """Connections in use plus callers waiting, from the pool's own counts."""
        stats = self.pool.get_stats()
        return stats["pool_size"] - stats["pool_available"] + stats.get("requests_waiting", 0)

    @property
    def state(self) -> str:
        if not self.health.up:
            return "down"
        return "stale" if self.role == "replica" and not self.fresh else "up"

    def record(self) -> HostRecord:
        return HostRecord(self.role, self.health, self.fresh, self.lsn, self.lag_bytes, self.lag_seconds,
                          self.last_error, self.checked_at)

    def adopt(self, record: HostRecord) -> None:
        """Take the record a health check produced (``db.transitions.transition``)."""
        self.role, self.health, self.fresh = record.role, record.health, record.fresh
        self.lsn, self.lag_bytes, self.lag_seconds = record.lsn, record.lag_bytes, record.lag_seconds
        self.last_error, self.checked_at = record.last_error, record.checked_at
        if self.role == "replica":
            if self.lag_bytes is not None:
                metrics.LAG_BYTES.labels(self.name).set(self.lag_bytes)
            if self.lag_seconds is not None:
                metrics.LAG_SECONDS.labels(self.name).set(self.lag_seconds)

    def view(self) -> HostView:
        return HostView(self.name, self.role, self.health.up, self.fresh, self.lag_bytes, self.lag_seconds)

    def status(self, pools: bool = True) -> dict[str, Any]:
        connections = None
        if pools:
            stats = self.pool.get_stats()
            connections = {"in_use": stats["pool_size"] - stats["pool_available"], "idle": stats["pool_available"],
                           "size": stats["pool_size"], "max": stats["pool_max"],
                           "waiting": stats.get("requests_waiting", 0)}
        return {
            "host": self.name,
            "role": self.role,
            "configured_role": self.spec.role,
            "state": self.state,
            "breaker": self.breaker.state.name,
            "weight": self.spec.weight,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "lag_bytes": self.lag_bytes,
            "lsn": None if self.lsn is None else format_lsn(self.lsn),
            "connections": connections,
            "queries": self.queries,
            "errors": self.errors,
            "last_error": self.last_error,
            "checked_at": self.checked_at,
        }
