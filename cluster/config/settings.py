"""The typed settings model: every key, its type, bounds and default.

Defaults are the seed system's. Each section is a pydantic model that forbids
unknown keys, so a typo in a TOML file or a ``CLUSTER_*`` variable is an error
that names the key instead of a setting silently ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cluster.config.monitored import NAMES as MONITORED_NAMES
from cluster.config.values import header_problem, redis_db_problem, tcp_address_problem

PRIORITIES: tuple[str, ...] = ("high", "medium", "low", "background")
# Upper bounds of counts and sizes (docs/security.md: Bounds): a typo of a few zeros is an error, not a fork storm.
MAX_WORKERS = 1024
MAX_POOL_WORKERS = 64
MAX_QUEUE_SIZE = 1_000_000
MAX_CONCURRENCY = 1000
DEFAULT_CONCURRENCY = 32
"""Jobs at once per pool process. Most jobs wait on I/O, and a consumer's reads and acks are batched
up to this many: 32 spends about a third less CPU per job than 10 did (scripts/bench/queues)."""
MAX_DB_POOL = 1000
MAX_SECONDS = 86400.0
MAX_MEMORY_MB = 1024 * 1024
MAX_VALUE_BYTES = 64 * 1024 * 1024
MIN_SECRET_LENGTH = 16
"""Shortest admin token and ack secret: guessing a 16-character secret online is hopeless, a 1-character one is not."""


class Section(BaseModel):
    # inf/nan validate here but become null in settings.json, which every child then rejects.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


def _check_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    parts.port  # raises ValueError for a port out of 0-65535
    if parts.scheme not in schemes:
        raise ValueError(f"URL scheme must be one of {', '.join(schemes)}, got {parts.scheme or 'none'!r}")
    if parts.scheme not in ("unix",) and not parts.hostname and not parts.path:
        raise ValueError("URL has no host")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ValueError("URL has no host")
    if parts.scheme in ("redis", "rediss", "unix") and (problem := redis_db_problem(value)):
        raise ValueError(problem)
    return value


class ServerSettings(Section):
    bind: list[str] = Field(default_factory=lambda: ["127.0.0.1:8000"], min_length=1, max_length=64)
    app: str | None = None
    state_dir: str = ".cluster"
    graceful_timeout: int = Field(30, gt=0, le=MAX_SECONDS)
    timeout: int = Field(30, gt=0, le=MAX_SECONDS, description="gunicorn heartbeat timeout (s)")
    boot_grace: float = Field(30.0, ge=0, le=MAX_SECONDS,
                              description="a booting worker is not taken for hung before this (s)")
    keepalive: int = Field(5, ge=0, le=3600)
    backlog: int = Field(2048, ge=1, le=65535, description="listen backlog of each bound socket, as gunicorn's")
    max_body_size: int = Field(1024 * 1024, gt=0, le=64 * 1024 * 1024)
    body_timeout: float = Field(30.0, gt=0, le=MAX_SECONDS,
                                description="a request body that sends nothing for this long gets 408 (s)")
    worker_tmp_dir: str | None = None
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="the workers' event loop: auto is uvloop when installed (see docs/http.md: Event loop)")
    access_log: bool = False
    trusted_proxies: list[str] = Field(
        default_factory=list, max_length=256, description="peers (IPs or CIDR networks) whose forwarded_header is believed; "
                                          "such a peer is never a local client")
    forwarded_header: str = Field(
        "X-Forwarded-For", pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="the one header the trusted proxies set to the client's address (X-Forwarded-For, "
                    "Forwarded or X-Real-IP); any other is ignored")
    allowed_hosts: list[str] = Field(
        default_factory=list, max_length=256,
        description="names (Host header) under which the admin surfaces answer, besides loopback and the binds")
    unix_mode: str = Field("0600", pattern=r"^0?[0-7]{3}$", description="mode of a unix: bind's socket (octal)")
    unix_group: str | None = Field(None, description="group of a unix: bind's socket (name or gid); unset: ours")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: list[str]) -> list[str]:
        for item in value:
            if item.startswith("unix:"):
                continue
            if problem := tcp_address_problem(item):
                raise ValueError(f"bind address {problem} (HOST:PORT or unix:PATH)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network (names are not resolved)") from None
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        return [host.strip().lower() for host in value if host.strip()]

    @field_validator("app")
    @classmethod
    def _app(cls, value: str | None) -> str | None:
        if value and ":" not in value:
            raise ValueError(f"app {value!r} is not module:app or module:factory()")
        return value


class WorkerSettings(Section):
    min: int = Field(8, ge=1, le=MAX_WORKERS)
    max: int = Field(32, ge=1, le=MAX_WORKERS)
    max_worker_memory_mb: int | None = Field(None, gt=0, le=MAX_MEMORY_MB)


class AutoscaleSettings(Section):
    enabled: bool = True
    scale_up_threshold: float = Field(80.0, gt=0, le=100)
    scale_down_threshold: float = Field(30.0, ge=0, lt=100)
    cooldown: float = Field(30.0, ge=0)
    sample_interval: float = Field(5.0, gt=0)
    warmup: float = Field(10.0, ge=0)
    up_samples: int = Field(2, ge=1, le=1000)
    down_samples: int = Field(3, ge=1, le=1000)
    tolerance: float = Field(0.1, ge=0, lt=1)
    max_up_step: int = Field(4, ge=1, le=MAX_WORKERS)
    max_down_step: int = Field(1, ge=1, le=MAX_WORKERS)
    stabilization_window: float = Field(300.0, ge=0)
    system_cpu_ceiling: float = Field(90.0, gt=0, le=100)
    min_free_memory_mb: int = Field(256, ge=0, le=MAX_MEMORY_MB)
    flap_window: float = Field(120.0, ge=0)
    backlog_threshold: int = Field(
        33, ge=0, le=65535, description="listen backlog that adds a worker at once, cooldown or not (uWSGI busyness); 0: off",
    )


class HealthSettings(Section):
    interval: float = Field(30.0, gt=0)
    timeout: float = Field(5.0, gt=0)
    failures_before_reload: int = Field(3, ge=1, le=1000)


class RestartSettings(Section):
    backoff_initial: float = Field(0.5, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    crash_loop_deaths: int = Field(5, ge=1, le=1000)
    crash_loop_window: float = Field(60.0, gt=0)


class QueuePoolSettings(Section):
    workers: int = Field(ge=0, le=MAX_POOL_WORKERS)
    timeout: float = Field(gt=0, le=MAX_SECONDS)
    max_size: int = Field(10000, ge=1, le=MAX_QUEUE_SIZE)
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY,
                             description="jobs one pool process runs at once (async tasks; threads for sync handlers)")
    retries: int = Field(3, ge=0, le=100)


POOL_DEFAULTS: dict[str, dict[str, Any]] = {
    "high": {"workers": 4, "timeout": 5},
    "medium": {"workers": 3, "timeout": 10},
    "low": {"workers": 2, "timeout": 30},
    "background": {"workers": 1, "timeout": 60},
}


class QueueSettings(Section):
    high: QueuePoolSettings = Field(default_factory=lambda: QueuePoolSettings(**POOL_DEFAULTS["high"]))
    medium: QueuePoolSettings = Field(default_factory=lambda: QueuePoolSettings(**POOL_DEFAULTS["medium"]))
    low: QueuePoolSettings = Field(default_factory=lambda: QueuePoolSettings(**POOL_DEFAULTS["low"]))
    background: QueuePoolSettings = Field(default_factory=lambda: QueuePoolSettings(**POOL_DEFAULTS["background"]))
    jobs_module: str | None = None
    result_ttl: float = Field(3600.0, gt=0)
    kill_grace: float = Field(5.0, ge=0)
    backoff_base: float = Field(2.0, gt=0, description="first retry delay (s); doubles each attempt, plus jitter")
    backoff_max: float = Field(3600.0, gt=0, description="longest retry delay (s)")
    max_delay: float = Field(7 * 24 * 3600.0, gt=0, description="longest delay (or time ahead for at=) of a job (s)")
    max_payload_bytes: int = Field(64 * 1024, ge=1, le=MAX_VALUE_BYTES, description="largest encoded args+kwargs of a job (bytes)")
    max_rss_mb: int | None = Field(None, ge=1, le=MAX_MEMORY_MB, description="a queue consumer over it finishes its jobs and is replaced")
    fork_server: bool = Field(True, description="fork the pool processes from one preloaded process (shared pages); "
                              "false: each starts a fresh interpreter")
    # The consumer's cadences and batches (cluster/queues/consumer.py and its parts); the defaults suit most.
    read_gather: float = Field(0.002, ge=0, le=1.0, description="a consumer with under half its slots free waits "
                               "this long (s) before reading, so one read takes a batch")
    ack_gather: float = Field(0.002, ge=0, le=1.0, description="outcomes gather this long (s) before one flush "
                              "acknowledges them all")
    running_mark_after: float = Field(0.5, ge=0, le=3600.0, description="a job is marked running in its state once "
                                      "it has run this long (s); 0: at the next flush")
    upkeep_every: float = Field(0.5, gt=0, le=60.0, description="a consumer's upkeep turn (s): due delayed jobs move "
                                "onto the queue at most this late")
    reclaim_every: float = Field(0.5, gt=0, le=60.0, description="how often (s) a consumer looks for dead consumers "
                                 "of its host to claim their jobs (checked at upkeep turns)")
    move_batch: int = Field(500, ge=1, le=10_000, description="due delayed jobs moved per Redis script call")
    claim_batch: int = Field(500, ge=1, le=10_000, description="jobs of a dead consumer claimed per Redis script call")
    periodic_lease: float = Field(60.0, ge=0.5, le=3600.0, description="the periodic jobs' leader lease (s): "
                                  "renewed every quarter of it; a leader that dies is replaced within 1.5 leases")

    @model_validator(mode="before")
    @classmethod
    def _pool_defaults(cls, data: Any) -> Any:
        """Setting one key of a pool (QUEUE_HIGH_WORKERS=8) keeps that priority's other defaults."""
        if isinstance(data, dict):
            data = {**data, **{p: {**defaults, **data[p]} for p, defaults in POOL_DEFAULTS.items()
                               if isinstance(data.get(p), dict)}}
        return data

    def pool(self, priority: str) -> QueuePoolSettings:
        """The pool settings of one priority."""
        return getattr(self, priority)


class RedisSettings(Section):
    url: str | None = None
    embedded: bool = True
    maxmemory_mb: int | None = Field(None, ge=1, le=MAX_MEMORY_MB,
                                     description="the embedded Redis's maxmemory; unset: sized from the queue bounds")
    sentinels: list[str] = Field(
        default_factory=list, max_length=64, description="Redis Sentinel HOST:PORT list (REDIS_SENTINELS); with sentinel_master")
    sentinel_master: str | None = Field(None, description="the master's name in Sentinel (REDIS_SENTINEL_MASTER)")
    wait_replicas: int = Field(
        0, ge=0, le=64, description="an enqueue is acknowledged only once this many replicas have it (WAIT); 1 with Sentinel")
    wait_timeout: float = Field(1.0, gt=0, description="how long an enqueue waits for its replicas (s)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and value.startswith("redis+sentinel://"):  # made from sentinels (below), parsed by queues
            return value
        return _check_url(value, ("redis", "rediss", "unix"))

    @model_validator(mode="after")
    def _sentinel_url(self) -> "RedisSettings":
        """Sentinels given: the URL every process connects with names them (redis+sentinel://...)."""
        if self.sentinels and self.sentinel_master and not self.url:
            self.url = f"redis+sentinel://{','.join(self.sentinels)}/{self.sentinel_master}/0"
        return self


class ReplicaSettings(Section):
    url: str
    weight: int = Field(1, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("postgresql", "postgres")) or ""


class DatabaseSettings(Section):
    url: str | None = None
    replicas: list[ReplicaSettings] = Field(default_factory=list, max_length=64)
    pool_size: int = Field(10, ge=1, le=MAX_DB_POOL)
    strategy: Literal["round_robin", "least_connections", "weighted"] = "weighted"
    health_check_interval: float = Field(15.0, gt=0)
    max_lag_seconds: float = Field(10.0, ge=0)
    max_lag_bytes: int = Field(8 * 1024 * 1024, ge=0, le=2**40)
    fallback: Literal["primary", "least_lagged"] = "primary"
    sticky_window: float = Field(30.0, ge=0)
    connect_timeout: float = Field(2.0, gt=0, description="health probes: connect and statement timeout (s)")
    checkout_timeout: float = Field(5.0, gt=0, description="wait for a pool connection at most this long (s)")
    prepare_threshold: int | None = Field(
        5, ge=0, le=1_000_000, description="psycopg's prepare_threshold; empty (None) behind PgBouncer's transaction pooling")
    read_timeout: float = Field(3.0, gt=0, description="a routed read slower than this fails over to another host (s)")
    checkout_wait: float = Field(0.05, gt=0, description="wait this long for a host's pool before trying another (s)")
    slow_query_ms: float = Field(1000.0, ge=0, description="log routed statements slower than this (ms)")
    max_lifetime: float = Field(3600.0, gt=0, description="recycle a connection after this long, jittered (s)")
    max_idle: float = Field(600.0, gt=0, description="close a pool connection idle this long (s)")
    ping_after_idle: float = Field(30.0, ge=0, description="ping a connection idle this long before handing it out (s)")
    health_view: str | None = Field(
        None, description="the supervisor's health view file, set by `cluster start` for its children; "
                          "unset: each process probes the hosts itself")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value, ("postgresql", "postgres"))


class MonitoringSettings(Section):
    metrics_interval: float = Field(5.0, gt=0)
    alert_cooldown: float | None = Field(
        None, ge=0, description="one cooldown for both severities: when set, the repeat interval of both (s)")
    alert_for: float | None = Field(None, ge=0, description="when set, the `for` of both severities (s); 0: at once")
    alert_for_warning: float = Field(60.0, ge=0, description="a warning condition must hold this long to fire (s)")
    alert_for_critical: float = Field(30.0, ge=0, description="a critical condition must hold this long to fire (s)")
    alert_clear_for: float = Field(
        60.0, ge=0, description="a firing alert resolves once below its resolve threshold this long (s)")
    alert_hysteresis: float = Field(
        0.1, ge=0, lt=1, description="the resolve threshold is this fraction below the firing threshold")
    repeat_interval_warning: float = Field(14400.0, ge=0, description="re-notify a firing warning this often (s)")
    repeat_interval_critical: float = Field(3600.0, ge=0, description="re-notify a firing critical this often (s)")
    startup_grace: float = Field(60.0, ge=0, description="no condition starts counting this long after start (s)")
    window: float = Field(60.0, gt=0, description="window for p95, error rate and trends (s)")
    cpu_warning: float = Field(70.0, ge=0)
    cpu_critical: float = Field(90.0, ge=0)
    memory_warning: float = Field(80.0, ge=0)
    memory_critical: float = Field(95.0, ge=0)
    response_time_warning: float = Field(1.0, ge=0)
    response_time_critical: float = Field(3.0, ge=0)
    error_rate_warning: float = Field(1.0, ge=0)
    error_rate_critical: float = Field(5.0, ge=0)
    concurrent_users_warning: float = Field(800, ge=0)
    concurrent_users_critical: float = Field(950, ge=0)
    queue_size_warning: float = Field(1000, ge=0)
    queue_size_critical: float = Field(5000, ge=0)


class EscalationStep(Section):
    """One step of an escalation policy: notify these channels, then wait before the next step."""

    channels: list[str] = Field(min_length=1, max_length=16)
    escalate_after_minutes: float = Field(30.0, gt=0, description="minutes before the next step (or the next round)")


class EscalationPolicy(Section):
    steps: list[EscalationStep] = Field(min_length=1, max_length=32)
    repeat: int = Field(1, ge=1, le=100, description="rounds of the whole chain before it stops")


ALERT_CHANNELS: tuple[str, ...] = ("log", "webhook", "telegram", "email", "sms")


class AlertSettings(Section):
    webhook_url: str | None = None
    webhook_headers: dict[str, str] = Field(default_factory=dict, max_length=64)
    telegram_bot_token: str | None = None
    telegram_chat_id: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    smtp_host: str | None = None
    smtp_port: int = Field(587, gt=0, lt=65536)
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: str | None = None
    email_from: str | None = None
    email_to: list[str] = Field(default_factory=list, max_length=100)
    sms_api_base: str = "https://api.twilio.com"
    sms_account_sid: str | None = None
    sms_auth_token: str | None = None
    sms_from: str | None = None
    sms_to: list[str] = Field(default_factory=list, max_length=100)
    group_wait: float = Field(10.0, ge=0, description="what reaches a channel within this window is one message (s)")
    escalation: dict[Literal["warning", "critical"], EscalationPolicy] = Field(
        default_factory=dict, description="per severity: ordered steps, repeated, stopped by an acknowledgement")
    ack_base_url: str | None = Field(None, description="public URL of the workers, for signed acknowledge links")
    ack_secret: str | None = Field(None, min_length=MIN_SECRET_LENGTH,
                                   description="HMAC key of ack links; default: <state_dir>/alerts.secret")

    @field_validator("webhook_url", "telegram_api_base", "sms_api_base", "ack_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value, ("http", "https"))

    @field_validator("webhook_headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if problem := header_problem(name, text):
                raise ValueError(problem)
        return value


class MetricsSettings(Section):
    bind: str | None = Field("127.0.0.1:8199", description=(
        "/metrics and the dashboard; \"\" disables. 8199 lies outside 9100-9999, the range the Prometheus "
        "exporters have taken (node_exporter holds 9100)"))

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str | None) -> str | None:
        if value and (problem := tcp_address_problem(value)):
            raise ValueError(f"bind address {problem}")
        return value


class AdminSettings(Section):
    token: str | None = Field(None, min_length=MIN_SECRET_LENGTH,
                              description="bearer token for admin routes and actions (CLUSTER_ADMIN_TOKEN)")
    trust_local: bool = Field(True, description="a loopback or unix-socket peer with no proxy header is admin "
                                                "without the token (docs/security.md: tunnels, header-less proxies)")


class DashboardSettings(Section):
    enabled: bool = Field(True, description="serve the operator dashboard at /dashboard/ on metrics.bind")
    read_only: bool = Field(False, description="show everything, refuse every action")
    history_step: float = Field(10.0, gt=0, description="seconds between two history points")
    history_points: int = Field(8640, ge=60, le=200_000, description="history points kept (8640 x 10 s = 24 h)")
    session_ttl: float = Field(12 * 3600.0, gt=0, description="a login session's lifetime (s)")
    cookie_secure: bool = Field(False, description="always mark the dashboard's cookies Secure (else only when the "
                                                   "request is HTTPS, directly or by a trusted proxy)")


class LoggingSettings(Section):
    format: Literal["auto", "json", "text"] = Field(
        "auto", description="auto: text on a terminal, JSON lines otherwise (journald)")
    file: str | None = Field(
        None, description="append to this file instead of stderr; reopened on SIGUSR1 (logrotate)")


class CacheSettings(Section):
    enabled: bool = True
    url: str | None = Field(None, description="Redis for the cache; empty: redis.url (the queues' Redis)")
    timeout: float = Field(0.05, gt=0, description="a cache command slower than this is a miss: the function runs (s)")
    max_value_bytes: int = Field(512 * 1024, gt=0, le=MAX_VALUE_BYTES, description="a larger JSON value is returned but not stored")
    pool_size: int = Field(32, ge=1, le=MAX_DB_POOL, description="the cache's own Redis connections per process")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value, ("redis", "rediss", "unix"))


class RateLimitRule(Section):
    path: str = Field(description="a route pattern: glob on the request path, e.g. /api/quotes/*")
    limit: str = Field(description="the limits library's notation, e.g. '100/minute' or '10/second;1000/hour'")
    per: Literal["ip", "api_key", "route"] = "ip"
    methods: list[str] = Field(default_factory=list, max_length=16, description="empty: every method")


class RateLimitSettings(Section):
    enabled: bool = True
    url: str | None = Field(None, description="Redis for the counters; empty: redis.url")
    strategy: Literal["sliding-window-counter", "moving-window", "fixed-window"] = "sliding-window-counter"
    rules: list[RateLimitRule] = Field(default_factory=list, max_length=256)
    api_key_header: str = "X-API-Key"
    fail_open: bool = Field(True, description="Redis down: let requests through (false: answer 503)")
    timeout: float = Field(0.1, gt=0, description="a Redis call slower than this counts as Redis down (s)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value, ("redis", "rediss", "unix"))


class Settings(Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    autoscale: AutoscaleSettings = Field(default_factory=AutoscaleSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    restart: RestartSettings = Field(default_factory=RestartSettings)
    queues: QueueSettings = Field(default_factory=QueueSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    ratelimit: RateLimitSettings = Field(default_factory=RateLimitSettings)


def cross_field_problems(settings: Settings) -> list[tuple[str, str]]:
    """Rules that involve two keys, as (key, problem) pairs."""
    problems: list[tuple[str, str]] = []
    if settings.workers.min > settings.workers.max:
        problems.append(("workers.min", f"min ({settings.workers.min}) is greater than workers.max ({settings.workers.max})"))
    auto = settings.autoscale
    if auto.scale_down_threshold >= auto.scale_up_threshold:
        problems.append((
            "autoscale.scale_down_threshold",
            f"must be below autoscale.scale_up_threshold ({auto.scale_up_threshold})",
        ))
    if settings.restart.backoff_initial > settings.restart.backoff_max:
        problems.append(("restart.backoff_initial", "is greater than restart.backoff_max"))
    mon = settings.monitoring
    for metric in MONITORED_NAMES:
        warning, critical = getattr(mon, f"{metric}_warning"), getattr(mon, f"{metric}_critical")
        if warning > critical:
            problems.append((f"monitoring.{metric}_warning", f"warning ({warning}) is above critical ({critical})"))
    for severity, policy in settings.alerts.escalation.items():
        for step in policy.steps:
            unknown = sorted(set(step.channels) - set(ALERT_CHANNELS))
            if unknown:
                problems.append((f"alerts.escalation.{severity}", f"unknown channel(s) {', '.join(unknown)}: "
                                 f"use {', '.join(ALERT_CHANNELS)}"))
    for i, replica in enumerate(settings.database.replicas):
        if not replica.url:
            problems.append((f"database.replicas.{i}.url", "is empty"))
    if settings.database.replicas and not settings.database.url:
        problems.append(("database.url", "replicas are configured but the primary (DATABASE_URL) is not"))
    return problems
