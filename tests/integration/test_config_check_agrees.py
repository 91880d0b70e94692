"""`config check` refuses what `start` refuses (issue 24, finding 9): the same key named, exit 2, before anything
forks. Real `cluster` processes; each value below passed `config check` before, and `start` then failed or
ran on with the mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import free_port, run_cli

pytestmark = pytest.mark.integration

CASES = {
    "an address no host has": ("server.bind", {"CLUSTER_SERVER_BIND": '["999.999.999.999:8000"]'}),
    "a name that does not resolve": ("server.bind", {"CLUSTER_SERVER_BIND": '["no-such-host.invalid:8000"]'}),
    "metrics.bind garbage": ("metrics.bind", {"CLUSTER_METRICS_BIND": "garbage"}),
    "metrics.bind port 99999": ("metrics.bind", {"CLUSTER_METRICS_BIND": "127.0.0.1:99999"}),
    "metrics.bind an address no host has": ("metrics.bind", {"CLUSTER_METRICS_BIND": "999.1.1.1:8199"}),
    "a Redis db that is no number": ("redis.url", {"REDIS_URL": "redis://127.0.0.1:6399/abc"}),
    "a cache Redis db that is no number": ("cache.url", {"CLUSTER_CACHE_URL": "redis://127.0.0.1:6399/x1"}),
    "a webhook header with CRLF": ("alerts.webhook_headers",
                                   {"CLUSTER_ALERTS_WEBHOOK_HEADERS": '{"X-Team": "ops\\r\\nX-Injected: 1"}'}),
    "a state dir under /proc": ("server.state_dir", {"CLUSTER_SERVER_STATE_DIR": "/proc/cluster-state"}),
}


def environment(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    """A start that would succeed but for ``extra``: free ports, its own state dir, no Redis to wait for."""
    return {"CLUSTER_SERVER_BIND": f'["127.0.0.1:{free_port()}"]', "CLUSTER_METRICS_BIND": f"127.0.0.1:{free_port()}",
            "CLUSTER_SERVER_STATE_DIR": str(tmp_path / "state"), "CLUSTER_REDIS_EMBEDDED": "false", **extra}


@pytest.mark.parametrize("case", list(CASES))
def test_config_check_and_start_refuse_the_same_value_naming_the_key(tmp_path: Path, case: str) -> None:
    key, extra = CASES[case]
    env = environment(tmp_path, extra)

    checked = run_cli("config", "check", env=env, cwd=tmp_path)
    started = run_cli("start", "--workers", "1", env=env, cwd=tmp_path, timeout=60)

    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert key in checked.stderr and "ok:" not in checked.stdout
    assert started.returncode == 2, started.stderr[-2000:]
    assert key in started.stderr
    assert not (tmp_path / "state" / "settings.json").exists()  # refused before anything was written or forked


def test_a_symlinked_state_dir_fails_config_check_as_it_fails_start(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    env = environment(tmp_path, {"CLUSTER_SERVER_STATE_DIR": str(tmp_path / "link")})
    checked = run_cli("config", "check", env=env, cwd=tmp_path)
    started = run_cli("start", "--workers", "1", env=env, cwd=tmp_path, timeout=60)
    assert checked.returncode == started.returncode == 2
    assert "server.state_dir" in checked.stderr and "symlink" in started.stderr
    assert list(real.iterdir()) == []


def test_a_good_configuration_still_passes(tmp_path: Path) -> None:
    checked = run_cli("config", "check", env=environment(tmp_path, {}), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert not os.path.exists(tmp_path / "state")  # config check creates nothing
