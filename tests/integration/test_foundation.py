"""The foundation on real processes: a real supervisor, gunicorn arbiter, aiohttp workers, signals, sockets."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import psutil
import pytest

from tests.support import ClusterProcess, RequestLoop, http_get, run_cli, wait_for

pytestmark = pytest.mark.integration


def test_serves_builtin_endpoints_with_request_ids(cluster_factory) -> None:
    c: ClusterProcess = cluster_factory(env={"CLUSTER_SERVER_ACCESS_LOG": "true"})
    status, headers, body = http_get(c.url + "/ping", headers={"X-Request-ID": "req-abc-123"})
    assert (status, json.loads(body)) == (200, {"ok": True})
    assert headers["X-Request-ID"] == "req-abc-123"

    status, headers, body = http_get(c.url + "/health")
    assert headers["Content-Type"].startswith("application/health+json")
    health = json.loads(body)
    assert health["checks"]["worker"][0]["status"] == "pass"
    # The overall status is the worst required check's; the health score (it follows the host's CPU,
    # which other work on this machine moves) is informational and never counts.
    worst = max((check[0]["status"] for check in health["checks"].values() if check[0].get("affectsStatus", True)),
                key=["pass", "warn", "fail"].index)
    assert health["status"] == worst and status == (503 if worst == "fail" else 200)

    assert http_get(c.url + "/livez")[0] == 200
    assert json.loads(http_get(c.url + "/readyz")[2])["ready"] is True

    status, headers, body = http_get(c.url + "/no/such/path")
    assert status == 404 and json.loads(body)["error"] == "Not Found"
    generated = headers["X-Request-ID"]
    assert len(generated) == 32

    worker = json.loads(http_get(c.url + "/api/enterprise/status")[2])
    assert worker["pid"] in c.worker_pids()
    view = json.loads(http_get(c.url + "/api/enterprise/cluster/status")[2])
    assert view["workers"]["current"] == 2 and view["supervisor"]["pid"] == c.proc.pid

    def access_line(request_id: str) -> dict | None:
        return next((line for line in c.logs() if line.get("logger") == "cluster.access"
                     and line.get("request_id") == request_id), None)

    line = wait_for(lambda: access_line("req-abc-123"), 30, what="the access log line")
    assert line["path"] == "/ping" and line["status"] == 200 and line["role"] == "http-worker"
    assert wait_for(lambda: access_line(generated), 30, what="the 404's access line")["status"] == 404


def test_wrong_method_is_405_with_json(cluster_factory) -> None:
    c = cluster_factory()
    import urllib.request

    request = urllib.request.Request(c.url + "/livez", method="POST", data=b"{}")
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("POST /livez should fail")
    except urllib.error.HTTPError as exc:
        assert exc.code == 405
        body = json.loads(exc.read())
        assert body["error"] == "Method Not Allowed" and "GET" in body["allowed"]


def test_status_lists_the_processes(cluster_factory) -> None:
    c = cluster_factory(workers=3)
    status = c.status()
    groups = [row["group"] for row in status["processes"]]
    assert groups.count("http-worker") == 3 and groups.count("http") == 1
    arbiter = next(row for row in status["processes"] if row["group"] == "http")
    workers = [row for row in status["processes"] if row["group"] == "http-worker"]
    assert {psutil.Process(w["pid"]).ppid() for w in workers} == {arbiter["pid"]}
    text = c.cli("status")
    assert text.returncode == 0 and "http-worker" in text.stdout and str(arbiter["pid"]) in text.stdout


def test_killed_worker_is_replaced_and_the_port_keeps_answering(cluster_factory) -> None:
    c = cluster_factory(workers=2)
    before = c.worker_pids()
    loop = RequestLoop(c.url + "/ping", limit=20000)
    loop.start()
    os.kill(before[0], signal.SIGKILL)
    after = wait_for(lambda: (lambda p: p if len(p) == 2 and before[0] not in p else None)(c.worker_pids()),
                     60, 0.2, "a replacement worker")
    wait_for(lambda: http_get(c.url + "/ping")[0] == 200, 30)
    loop.stop()
    assert before[1] in after and loop.ok > 0
    # A request on a connection the killed worker held can fail; the port itself must keep
    # answering: the loop went on succeeding after the kill.
    assert len(loop.failures) <= 1, loop.failures


def test_reload_during_a_request_loop_loses_nothing(cluster_factory, tmp_path: Path) -> None:
    c = cluster_factory("tests.apps.slow:create_app()", workers=2)
    slow_result: dict = {}
    mark = tmp_path / "slow-started"
    slow = threading.Thread(
        target=lambda: slow_result.update(r=http_get(f"{c.url}/slow?seconds=3&mark={mark}", timeout=60)))
    slow.start()
    wait_for(mark.exists, 60, 0.05, "the slow request to reach a worker")
    loop = RequestLoop(c.url + "/hello")
    loop.start()
    for _ in range(3):
        before = set(c.worker_pids())
        result = c.cli("reload")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: not (set(c.worker_pids()) & before) and len(c.worker_pids()) == 2, 90, 0.2,
                 "every worker to be replaced")
    slow.join(60)
    loop.stop()
    assert loop.failures == [] and loop.ok > 0
    assert slow_result["r"][0] == 200, "the in-flight request must finish during a reload"
    assert c.status()["workers"]["target"] == 2


def test_sighup_reloads_and_keeps_a_scaled_count(cluster_factory) -> None:
    c = cluster_factory("--min-workers", "1", "--max-workers", "3")
    assert c.cli("scale", "3").returncode == 0
    wait_for(lambda: len(c.worker_pids()) == 3, 60, 0.2, "3 workers")
    before = set(c.worker_pids())
    c.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: not (set(c.worker_pids()) & before) and len(c.worker_pids()) == 3, 90, 0.2,
             "3 new workers after HUP")
    assert c.status()["workers"]["target"] == 3


def test_scale_pins_and_rejects_out_of_bounds(cluster_factory) -> None:
    c = cluster_factory("--min-workers", "1", "--max-workers", "3")
    ok = c.cli("scale", "1")
    assert ok.returncode == 0 and "target 1" in ok.stdout
    wait_for(lambda: len(c.worker_pids()) == 1, 60, 0.2, "1 worker")
    assert c.status()["workers"]["mode"] == "manual"
    bad = c.cli("scale", "9")
    assert bad.returncode == 1 and "outside [1, 3]" in bad.stderr


def test_ttin_and_ttou_add_and_remove_one_worker_within_the_bounds(cluster_factory) -> None:
    c = cluster_factory("--min-workers", "1", "--max-workers", "2")
    for _ in range(2):  # the second is clamped to the maximum
        c.proc.send_signal(signal.SIGTTIN)
    wait_for(lambda: c.status()["workers"]["target"] == 2 and len(c.worker_pids()) == 2, 60, 0.2, "2 workers")
    assert c.status()["workers"]["mode"] == "manual"
    c.proc.send_signal(signal.SIGTTOU)
    wait_for(lambda: c.status()["workers"]["target"] == 1 and len(c.worker_pids()) == 1, 60, 0.2, "1 worker")
    # The arbiter said why the other worker left.
    wait_for(lambda: c.status()["workers"]["exit_reasons"].get("retired", 0) == 1, 60, 0.2, "a reported retirement")
    assert "crashed" not in c.status()["workers"]["exit_reasons"]


def test_killed_arbiter_is_restarted_by_the_supervisor(cluster_factory) -> None:
    c = cluster_factory(workers=1)
    arbiter = next(r["pid"] for r in c.status()["processes"] if r["group"] == "http")
    os.kill(arbiter, signal.SIGKILL)
    row = wait_for(lambda: next((r for r in c.status()["processes"]
                                 if r["group"] == "http" and r["pid"] and r["pid"] != arbiter), None),
                   60, 0.2, "a new arbiter")
    assert row["restarts"] == 1
    wait_for(lambda: http_get(c.url + "/ping")[0] == 200, 60, 0.2, "the port to answer again")


def test_stop_exits_zero_and_leaves_no_process(cluster_factory) -> None:
    c = cluster_factory("--jobs", "tests.queues.jobs", workers=2, queues=True)
    groups = {row["group"] for row in c.status()["processes"]}
    assert {"http", "http-worker", "redis", "queue-high"} <= groups
    tree = c.tree_pids()
    assert len(tree) >= 15  # supervisor, arbiter, 2 workers, redis-server, 10 queue pool processes
    result = c.cli("stop")
    assert result.returncode == 0 and "stopped" in result.stdout
    assert c.proc.wait(60) == 0
    alive = [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not (c.state_dir / "control.sock").exists()


def test_sigterm_stops_gracefully(cluster_factory, tmp_path: Path) -> None:
    c = cluster_factory("tests.apps.slow:create_app()", workers=1)
    tree = c.tree_pids()
    result: dict = {}
    mark = tmp_path / "slow-started"
    slow = threading.Thread(
        target=lambda: result.update(r=http_get(f"{c.url}/slow?seconds=2&mark={mark}", timeout=60)))
    slow.start()
    wait_for(mark.exists, 60, 0.05, "the request to reach the worker")
    c.proc.send_signal(signal.SIGTERM)
    assert c.proc.wait(90) == 0
    slow.join(30)
    assert result["r"][0] == 200, "the in-flight request finishes before the stop"
    assert not [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_bad_config_exits_2_naming_the_key_before_forking(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = run_cli("start", "--state-dir", str(state), env={"CLUSTER_MIN_WORKERS": "40", "REDIS_URL": "http://x"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "config error: redis.url: URL scheme must be one of redis, rediss, unix, got 'http'" in lines[0]
    assert all(line.startswith("config error: ") for line in lines)
    assert not state.exists(), "nothing may be started for a bad config"

    toml = tmp_path / "bad.toml"
    toml.write_text("[workers]\nmin = 5\nmax = 2\n")
    result = run_cli("start", "--config", str(toml), "--state-dir", str(state))
    assert result.returncode == 2
    assert result.stderr.strip() == f"config error: workers.min: min (5) is greater than workers.max (2) (from file {toml})"
    check = run_cli("config", "check", str(toml))
    assert check.returncode == 2 and "workers.min" in check.stderr


def test_config_show_gives_sources_and_masks_secrets() -> None:
    result = run_cli("config", "show", "--json", env={"REDIS_URL": "redis://:topsecret@h:6379", "CLUSTER_MIN_WORKERS": "3"})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["workers.min"] == {"value": 3, "source": "env CLUSTER_MIN_WORKERS"}
    assert shown["workers.max"] == {"value": 32, "source": "default"}
    assert shown["redis.url"]["value"] == "redis://:****@h:6379"
    assert "topsecret" not in result.stdout


def test_second_supervisor_on_the_same_state_dir_is_refused(cluster_factory) -> None:
    c = cluster_factory(workers=1)
    result = run_cli("start", "--workers", "1", "--bind", "127.0.0.1:1", "--state-dir", str(c.state_dir), timeout=60)
    assert result.returncode == 1 and "already runs" in result.stderr
    assert http_get(c.url + "/ping")[0] == 200


def test_workers_over_their_memory_cap_are_recycled(cluster_factory) -> None:
    # Never READY: its only worker is recycled (draining, /readyz 503) every second.
    c = cluster_factory(workers=1, env={"CLUSTER_WORKERS_MAX_WORKER_MEMORY_MB": "1", "CLUSTER_HEALTH_INTERVAL": "1"},
                        wait_ready=False)
    first = wait_for(lambda: c.worker_pids()[0], 60, 0.1, "a first worker")
    wait_for(lambda: (lambda p: len(p) == 1 and p[0] != first)(c.worker_pids()), 60, 0.2, "a recycled worker")
    recycled = [line for line in c.logs() if line.get("message", "").startswith(f"recycling http worker {first}")]
    assert recycled and "over max_worker_memory_mb 1" in recycled[0]["message"]
    assert c.status()["health"]["recycled_workers"] >= 1


def test_systemd_notify_ready_after_boot_and_stopping(cluster_factory, tmp_path: Path) -> None:
    import socket

    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(90)
    try:
        c = cluster_factory(workers=2, env={"NOTIFY_SOCKET": address}, wait_ready=False)
        ready = ""
        while "READY=1" not in ready:  # EXTEND_TIMEOUT_USEC= may come first on a slow start
            ready = sock.recv(4096).decode()
        assert "READY=1" in ready and f"MAINPID={c.proc.pid}" in ready
        assert len(c.worker_pids()) == 2, "READY only once every worker has booted"
        assert http_get(c.url + "/ping")[0] == 200
        c.proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in sock.recv(4096).decode()
        assert c.proc.wait(60) == 0
    finally:
        sock.close()


def test_crash_loop_backs_off_and_raises_an_alert(cluster_factory, tmp_path: Path) -> None:
    # A crash loop after a good start (a start that never boots fails at once: tests/integration/test_lifecycle.py).
    marker = tmp_path / "break"
    c = cluster_factory(
        "tests.apps.lifecycle:breaks_on_marker()", workers=1,
        env={"CLUSTER_RESTART_CRASH_LOOP_DEATHS": "2", "CLUSTER_RESTART_BACKOFF_INITIAL": "0.2",
             "CLUSTER_RESTART_BACKOFF_MAX": "2", "LIFECYCLE_BREAK_FILE": str(marker)},
    )
    marker.write_text("")
    os.kill(next(r["pid"] for r in c.status()["processes"] if r["group"] == "http"), signal.SIGKILL)
    alert = wait_for(lambda: next((line for line in c.logs() if line.get("alert") == "crash_loop"), None),
                     90, 0.2, "the crash-loop alert")
    assert alert["level"] == "CRITICAL" and alert["child"] == "http"
    http = next(r for r in c.status()["processes"] if r["group"] == "http")
    assert http["crash_loop"] is True and http["restarts"] >= 2
    delays = [line["restart_delay"] for line in c.logs() if "restart_delay" in line]
    assert delays[:3] == [0.2, 0.4, 0.8], "exponential backoff between restarts"
    assert (c.state_dir / "control.sock").stat().st_mode & 0o777 == 0o600
