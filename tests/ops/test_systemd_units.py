"""`cluster systemd print|install`: the rendered units pass `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.cli.systemd import Install, render, stop_timeout
from cluster.config import Settings
from tests.support import run_cli


def _install(tmp_path: Path, bind: list[str] | None = None) -> Install:
    settings = Settings.model_validate({"server": {"bind": bind or ["127.0.0.1:8000"]}})
    return Install(name="cluster", venv=sys.prefix, config=str(tmp_path / "cluster.toml"), user="cluster",
                   settings=settings)


def test_service_unit_has_what_systemd_needs(tmp_path: Path) -> None:
    service = render(_install(tmp_path), socket=False)["cluster.service"]
    for line in ("Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=mixed",
                 "WatchdogSec=30", "Restart=on-failure", "LimitNOFILE=65536", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "PrivateTmp=yes", "PrivateDevices=yes",
                 "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "StateDirectory=cluster", "RuntimeDirectory=cluster", "User=cluster",
                 f"ExecStart={sys.prefix}/bin/cluster start --config {tmp_path}/cluster.toml"):
        assert line in service.splitlines(), line
    settings = Settings()
    # the queue pools' longest job (60 s) + kill grace, then gunicorn's graceful timeout: all within the stop timeout
    assert stop_timeout(settings) > settings.server.graceful_timeout + settings.queues.background.timeout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_rendered_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    dest = tmp_path / "units"
    result = run_cli("systemd", "install", "--socket", "--dest", str(dest), "--venv", sys.prefix,
                     "--config", str(tmp_path / "cluster.toml"))
    assert result.returncode == 0, result.stderr
    assert "systemctl enable --now cluster.socket cluster.service" in result.stdout
    units = sorted(dest.iterdir())
    assert [u.name for u in units] == ["cluster.service", "cluster.socket"]
    assert "ListenStream=127.0.0.1:8000" in (dest / "cluster.socket").read_text()
    verify = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True,
                            cwd=dest, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    # and it can fail: an unknown key is reported
    bad = dest / "cluster.service"
    bad.write_text(bad.read_text().replace("Type=notify", "Type=notify\nNoSuchKey=1"))
    verify = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "NoSuchKey" in verify.stderr
