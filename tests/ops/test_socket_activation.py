"""Socket activation: the HTTP tier serves on sockets systemd passed, and a restart refuses nothing.

systemd-socket-activate creates the listening socket (as cluster.socket would)
and hands it to tests/ops/socket_unit.py, which plays the service manager:
it starts `cluster start` on the socket, and restarts it on SIGUSR1 as
`systemctl restart cluster` does. A client loop runs across the restart, and
across a restart after a kill -9 of the supervisor (its old tree still drains
on the socket: the take-over waits for nothing, docs/lifecycle.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import ROOT, cli_env, free_port, http_get, run_cli, wait_for


def _supervisor_pid(pidfile: Path) -> int:
    return int(pidfile.read_text())


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate (Debian's systemd package) is not installed")
@pytest.mark.parametrize("crash", [False, True], ids=["restart", "restart after kill -9"])
def test_restart_under_socket_activation_refuses_no_connection(tmp_path: Path, crash: bool) -> None:
    port = free_port()
    state = tmp_path / "state"
    pidfile = tmp_path / "service.pid"
    extra = {"CLUSTER_REDIS_EMBEDDED": "false", "CLUSTER_METRICS_BIND": f"127.0.0.1:{free_port()}"}
    env = cli_env(extra)
    # systemd-socket-activate passes on only the variables given with -E (as a unit's Environment=)
    setenv = [f"-E{name}={env[name]}" for name in (*extra, "PYTHONPATH", "PATH")]
    # bind says another port: the supervisor must serve the inherited socket, whatever bind says; after a
    # crash, the socket's own address, as the generated cluster.socket has it (nothing checks or binds it)
    command = [sys.executable, "-m", "cluster.cli", "start", "--workers", "2", "--state-dir", str(state),
               "--bind", f"127.0.0.1:{port if crash else free_port()}"]
    log = (tmp_path / "unit.log").open("wb")
    unit = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=http", *setenv, "--",
         sys.executable, "-m", "tests.ops.socket_unit", str(pidfile), "--", *command],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/ping"
    results = {"ok": 0, "refused": 0, "other": 0}
    slowest = [0.0]
    errors: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status = http_get(url, timeout=60)[0]
                results["ok" if status == 200 else "other"] += 1
                slowest[0] = max(slowest[0], time.monotonic() - sent)
            except ConnectionRefusedError:
                results["refused"] += 1
            except OSError as exc:
                results["other"] += 1
                errors.append(repr(exc))

    try:
        # the first connection activates the service (it waits in the socket's backlog meanwhile)
        wait_for(lambda: http_get(url, timeout=60)[0] == 200, 120, 0.2, "the socket-activated cluster to serve")
        first = _supervisor_pid(pidfile)
        status = run_cli("status", "--json", "--state-dir", str(state), env=env)
        assert f"127.0.0.1:{port}" in status.stdout, "the supervisor reports the inherited socket as its bind"
        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        wait_for(lambda: results["ok"] >= 20, 60, 0.05, "requests before the restart")
        before = dict(results)
        if crash:
            os.kill(first, signal.SIGKILL)  # the supervisor only; then systemd's Restart=on-failure
        unit.send_signal(signal.SIGUSR1)
        wait_for(lambda: pidfile.exists() and _supervisor_pid(pidfile) != first, 60, 0.1, "the new service")
        wait_for(lambda: (run_cli("status", "--json", "--state-dir", str(state), env=env).stdout or "")
                 .find('"ready": true') >= 0, 120, 0.5, "the restarted cluster to be ready")
        wait_for(lambda: results["ok"] >= before["ok"] + 20, 60, 0.05, "requests after the restart")
        stop.set()
        thread.join(90)
    finally:
        stop.set()
        unit.send_signal(signal.SIGTERM)
        try:
            unit.wait(90)
        except subprocess.TimeoutExpired:
            unit.kill()
        log.close()
    print(f"\nsocket-activated restart: {results}, longest wait {slowest[0]:.1f}s (errors: {errors[:3]})")
    assert results["refused"] == 0 and results["other"] == 0, (results, errors[:5])
    assert results["ok"] > before["ok"] + 20
    said = (tmp_path / "unit.log").read_text(errors="replace")
    assert "cannot bind" not in said and "for the previous tree" not in said
