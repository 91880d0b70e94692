"""Every config rule and the source order: defaults < file < environment < CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config import ConfigError, effective, load
from cluster.config.loader import mask


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def problems(**kwargs) -> list[str]:
    kwargs.setdefault("env", {})
    kwargs.setdefault("use_default_files", False)
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    return info.value.problems


def test_defaults_are_the_seed_systems() -> None:
    s = load(env={}, use_default_files=False).settings
    assert (s.workers.min, s.workers.max) == (8, 32)
    assert (s.autoscale.scale_up_threshold, s.autoscale.scale_down_threshold, s.autoscale.cooldown) == (80, 30, 30)
    assert s.health.interval == 30
    pools = [(s.queues.pool(p).workers, s.queues.pool(p).timeout, s.queues.pool(p).max_size)
             for p in ("high", "medium", "low", "background")]
    assert pools == [(4, 5, 10000), (3, 10, 10000), (2, 30, 10000), (1, 60, 10000)]
    assert s.database.health_check_interval == 15
    # the seed's single 5-minute cooldown became per-severity repeat intervals (it still overrides both when set)
    assert (s.monitoring.alert_cooldown, s.monitoring.metrics_interval) == (None, 5)
    m = s.monitoring
    assert (m.cpu_warning, m.cpu_critical, m.memory_warning, m.memory_critical) == (70, 90, 80, 95)
    assert (m.response_time_warning, m.response_time_critical, m.error_rate_warning, m.error_rate_critical) == (1, 3, 1, 5)
    assert (m.concurrent_users_warning, m.concurrent_users_critical) == (800, 950)
    assert (m.queue_size_warning, m.queue_size_critical) == (1000, 5000)


def test_later_sources_win_and_provenance_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "[workers]\nmin = 2\nmax = 10\n[autoscale]\ncooldown = 5\n")
    loaded = load(
        config_file=path,
        env={"CLUSTER_MAX_WORKERS": "12", "CLUSTER_AUTOSCALE_COOLDOWN": "7"},
        overrides={"autoscale.cooldown": 9},
    )
    s = loaded.settings
    assert (s.workers.min, s.workers.max, s.autoscale.cooldown) == (2, 12, 9)
    assert loaded.source("workers.min") == f"file {path}"
    assert loaded.source("workers.max") == "env CLUSTER_MAX_WORKERS"
    assert loaded.source("autoscale.cooldown") == "cli"
    assert loaded.source("workers.max_worker_memory_mb") == "default"


def test_default_file_is_read_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "[workers]\nmin = 3\n")
    monkeypatch.chdir(tmp_path)
    loaded = load(env={})
    assert loaded.settings.workers.min == 3
    assert loaded.file == Path("cluster.toml")


def test_seed_environment_names_and_milliseconds() -> None:
    env = {
        "CLUSTER_MIN_WORKERS": "4", "CLUSTER_MAX_WORKERS": "16", "SCALE_UP_THRESHOLD": "75",
        "SCALE_DOWN_THRESHOLD": "25", "QUEUE_HIGH_WORKERS": "6", "QUEUE_MEDIUM_WORKERS": "5",
        "QUEUE_LOW_WORKERS": "1", "REPLICA_HEALTH_CHECK_INTERVAL": "5000",
        "MONITORING_ALERT_COOLDOWN": "60000", "MONITORING_METRICS_INTERVAL": "2500",
        "MONITORING_CPU_WARNING": "60", "MONITORING_MEMORY_WARNING": "70", "DB_POOL_SIZE": "20",
        "REDIS_URL": "redis://localhost:6379/0", "DATABASE_URL": "postgresql://app@db1/app",
        "DB_READ_REPLICA_1": "postgresql://app@r1/app", "DB_READ_REPLICA_1_WEIGHT": "3",
        "DB_READ_REPLICA_2": "postgresql://app@r2/app", "DB_READ_REPLICA_2_WEIGHT": "3",
        "DB_READ_REPLICA_3": "postgresql://app@r3/app", "DB_READ_REPLICA_3_WEIGHT": "2",
    }
    s = load(env=env, use_default_files=False).settings
    assert (s.workers.min, s.workers.max) == (4, 16)
    assert (s.autoscale.scale_up_threshold, s.autoscale.scale_down_threshold) == (75, 25)
    assert (s.queues.high.workers, s.queues.medium.workers, s.queues.low.workers) == (6, 5, 1)
    assert s.database.health_check_interval == 5.0
    assert (s.monitoring.alert_cooldown, s.monitoring.metrics_interval) == (60.0, 2.5)
    assert (s.monitoring.cpu_warning, s.monitoring.memory_warning) == (60, 70)
    assert s.database.pool_size == 20
    assert s.redis.url == "redis://localhost:6379/0"
    assert [(r.url.split("@")[1], r.weight) for r in s.database.replicas] == [
        ("r1/app", 3), ("r2/app", 3), ("r3/app", 2)]


def test_every_key_has_a_cluster_env_name() -> None:
    s = load(env={"CLUSTER_QUEUES_BACKGROUND_TIMEOUT": "90", "CLUSTER_SERVER_BIND": "0.0.0.0:80,127.0.0.1:81",
                  "CLUSTER_ALERTS_WEBHOOK_HEADERS": '{"X-Token": "abc"}', "CLUSTER_SERVER_ACCESS_LOG": "true"},
             use_default_files=False).settings
    assert s.queues.background.timeout == 90
    assert s.server.bind == ["0.0.0.0:80", "127.0.0.1:81"]
    assert s.alerts.webhook_headers == {"X-Token": "abc"}
    assert s.server.access_log is True


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"env": {"CLUSTER_MIN_WORKERS": "abc"}}, "workers.min: Input should be a valid integer"),
        ({"env": {"CLUSTER_MIN_WORKERS": "-1"}}, "workers.min: Input should be greater than or equal to 1"),
        ({"env": {"CLUSTER_AUTOSCALE_COOLDOWN": "-5"}}, "autoscale.cooldown: Input should be greater than or equal to 0"),
        ({"env": {"CLUSTER_MIN_WORKERS": "40"}}, "workers.min: min (40) is greater than workers.max (32)"),
        ({"env": {"REDIS_URL": "http://cache:6379"}}, "redis.url: URL scheme must be one of redis, rediss, unix"),
        ({"env": {"DATABASE_URL": "mysql://db/app"}}, "database.url: URL scheme must be one of postgresql, postgres"),
        ({"env": {"CLUSTER_ALERTS_WEBHOOK_URL": "not a url"}}, "alerts.webhook_url: URL scheme must be one of http, https"),
        ({"env": {"CLUSTER_WORKERS_MAXIMUM": "3"}}, "CLUSTER_WORKERS_MAXIMUM: unknown key"),
        ({"env": {"MONITORING_ALERT_COOLDOWN": "soon"}}, "monitoring.alert_cooldown: 'soon' is not a number of milliseconds"),
        ({"env": {"SCALE_DOWN_THRESHOLD": "90"}}, "autoscale.scale_down_threshold: must be below autoscale.scale_up_threshold"),
        ({"env": {"MONITORING_CPU_WARNING": "95"}}, "monitoring.cpu_warning: warning (95.0) is above critical (90.0)"),
        ({"env": {"CLUSTER_SERVER_BIND": "localhost"}}, "server.bind: bind address 'localhost' is not HOST:PORT"),
        ({"env": {"CLUSTER_DATABASE_STRATEGY": "random"}}, "database.strategy: Input should be"),
        ({"env": {"DB_READ_REPLICA_1": "postgresql://r1/app"}}, "database.url: replicas are configured but the primary"),
        ({"env": {"CLUSTER_ALERTS_WEBHOOK_HEADERS": "{nope"}}, "alerts.webhook_headers: CLUSTER_ALERTS_WEBHOOK_HEADERS: not a JSON object"),
    ],
)
def test_bad_environment_values_name_the_key_and_source(kwargs: dict, expected: str) -> None:
    found = problems(**kwargs)
    assert any(p.startswith(expected) for p in found), found
    assert all("(from " in p for p in found), found


def test_bad_file_values_name_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[workers]\nmin = 'two'\nmax = 0\n[autoscal]\ncooldown = 1\n[server]\ntimeout = -3\n")
    found = problems(config_file=path)
    assert f"workers.min: Input should be a valid integer, unable to parse string as an integer, got 'two' (from file {path})" in found
    assert any(p.startswith("workers.max: Input should be greater than or equal to 1") for p in found)
    assert f"autoscal: unknown key (from file {path})" in found
    assert any(p.startswith("server.timeout:") and str(path) in p for p in found)
    assert len(found) == 4


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    assert problems(config_file=tmp_path / "missing.toml") == [f"config file {tmp_path / 'missing.toml'}: not found"]
    broken = write(tmp_path, "[workers\n")
    assert problems(config_file=broken)[0].startswith(f"config file {broken}: not valid TOML")


def test_secrets_are_masked_in_the_effective_view() -> None:
    loaded = load(env={
        "REDIS_URL": "redis://:hunter2@cache:6379/0", "CLUSTER_ALERTS_SMTP_PASSWORD": "pw",
        "CLUSTER_ALERTS_TELEGRAM_BOT_TOKEN": "123:abc", "DATABASE_URL": "postgresql://app:s3cret@db/app",
        "DB_READ_REPLICA_1": "postgresql://app:s3cret@r1/app",
    }, use_default_files=False)
    shown = {key: value for key, value, _ in effective(loaded)}
    assert shown["redis.url"] == "redis://:****@cache:6379/0"
    assert shown["alerts.smtp_password"] == "****"
    assert shown["alerts.telegram_bot_token"] == "****"
    assert shown["database.url"] == "postgresql://app:****@db/app"
    assert shown["database.replicas"] == [{"url": "postgresql://app:****@r1/app", "weight": 1}]
    assert "hunter2" not in repr(shown) and "s3cret" not in repr(shown)
    assert mask("alerts.webhook_headers", {"Authorization": "Bearer x"}) == {"Authorization": "****"}
