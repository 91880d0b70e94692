"""Pure pieces of the first minute: which redis-server lines reach our log, and the ready line."""

from __future__ import annotations

import logging
from pathlib import Path

from cluster.config import Settings
from cluster.config.settings import AdminSettings, DashboardSettings, MetricsSettings, ServerSettings
from cluster.supervisor.announce import addresses, ready_line
from cluster.supervisor.redis_log import MAX_READ, OVERCOMMIT, RedisLogRelay, keep_previous, relayed

OVERCOMMIT_LINE = ("13442:M 07 Dec 2026 13:07:19.185 # WARNING Memory overcommit must be enabled! Without it, a "
                   "background save or replication may fail under low memory condition. To fix this issue add "
                   "'vm.overcommit_memory = 1' to /etc/sysctl.conf and then reboot or run the command "
                   "'sysctl vm.overcommit_memory=1' for this to take effect.")


def test_routine_lines_the_logo_and_notices_stay_in_the_file() -> None:
    for line in ["13442:C 07 Dec 2026 13:07:19.177 # oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo",
                 "13442:C 07 Dec 2026 13:07:19.177 # Configuration loaded",
                 "13442:M 07 Dec 2026 13:07:19.185 # Server initialized",
                 "13442:M 07 Dec 2026 13:07:53.528 # User requested shutdown...",
                 "13442:M 07 Dec 2026 13:07:19.190 * Ready to accept connections unix",
                 "                _._                                                  ",
                 ""]:
        assert relayed(line) is None, line


def test_the_overcommit_paragraph_is_one_line_with_its_fix() -> None:
    assert relayed(OVERCOMMIT_LINE) == (logging.WARNING, OVERCOMMIT)
    assert "sysctl vm.overcommit_memory=1" in OVERCOMMIT and "http" not in OVERCOMMIT


def test_persistence_and_start_failures_are_errors_others_warnings() -> None:
    level, text = relayed("7:M 07 Dec 2026 13:07:19.185 # Error writing to the AOF file: No space left on device")
    assert level == logging.ERROR and text == "redis-server: Error writing to the AOF file: No space left on device"
    level, _ = relayed("7:M 07 Dec 2026 13:07:19.185 # Fatal error loading the DB: Invalid argument. Exiting.")
    assert level == logging.ERROR
    level, _ = relayed("7:M 07 Dec 2026 13:07:19.185 # WARNING: 32 bit instance detected")
    assert level == logging.WARNING


def test_the_relay_reads_only_complete_new_lines_and_bounds_a_long_one(tmp_path: Path) -> None:
    path = tmp_path / "redis.log"
    relay = RedisLogRelay(path)
    assert relay.lines() == []  # not written yet
    path.write_bytes(b"one\ntw")
    assert relay.lines() == ["one"]
    with path.open("ab") as f:
        f.write(b"o\n" + b"x" * (MAX_READ + 10))
    assert relay.lines() == ["two"]
    assert relay.lines() == ["x" * MAX_READ]  # cut at the bound, the rest comes as its own line
    path.write_bytes(b"new run\n")  # shorter than what was read: a new file
    assert relay.lines() == ["new run"]


def test_the_previous_log_is_kept_once(tmp_path: Path) -> None:
    (tmp_path / "redis.log").write_text("first run\n")
    assert keep_previous(tmp_path) == tmp_path / "redis.log"
    assert (tmp_path / "redis.log.1").read_text() == "first run\n" and not (tmp_path / "redis.log").exists()
    assert keep_previous(tmp_path) == tmp_path / "redis.log"  # nothing to keep: no error


def test_the_ready_line_names_every_address_never_the_token(tmp_path: Path) -> None:
    settings = Settings(server=ServerSettings(bind=["0.0.0.0:8000", f"unix:{tmp_path}/app.sock"]),
                        metrics=MetricsSettings(bind="127.0.0.1:8199"),
                        admin=AdminSettings(token="s3cret-token-value-0123456789abcdef"))
    line = ready_line(addresses(settings, tmp_path))
    assert line.startswith("cluster ready: app http://127.0.0.1:8000/, http://localhost/ (unix:")
    assert "dashboard http://127.0.0.1:8199/dashboard/" in line and "metrics http://127.0.0.1:8199/metrics" in line
    assert f"control socket {tmp_path / 'control.sock'}" in line and "Authorization: Bearer" in line
    assert "s3cret" not in line
    off = Settings(metrics=MetricsSettings(bind=""), dashboard=DashboardSettings(enabled=False))
    line = ready_line(addresses(off, tmp_path))
    assert "dashboard off" in line and "metrics off" in line and "CLUSTER_ADMIN_TOKEN" in line
