"""The lifecycle on real processes: bad starts fail fast in one line, the user's routes win, stops lose nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import ROOT, ClusterProcess, bad_start, cli_env, free_port, http_get, wait_for

pytestmark = pytest.mark.integration
# `cluster start` exits well inside this (server.boot_grace is 30 s); it only bounds a hang.
START_DEADLINE = 120


def leftovers(marker: str) -> list[psutil.Process]:
    """Live processes whose command line names ``marker`` (a state dir, a port)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "pid"]):
        if proc.pid != os.getpid() and marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def long_state_dir(tmp_path: Path) -> Path:
    return tmp_path / ("d" * 50) / ("e" * 50)


def file_in_the_way(tmp_path: Path) -> Path:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    return blocker / "state"


BAD_STARTS: dict[str, tuple[list[str], dict[str, str], Any, int, str]] = {
    # case: (args, env, state dir maker, exit code, what the line says)
    "missing APP module": (["no_such_module:app"], {}, None, 1, "No module named 'no_such_module'"),
    "raising APP": (["tests.apps.lifecycle:raising()"], {}, None, 1, "the app cannot find its settings"),
    "APP not an Application": (["tests.apps.lifecycle:not_an_app"], {}, None, 1, "not an aiohttp.web.Application"),
    # A setting that can never work is a config error (2), in `config check` as in `start`.
    "unresolvable bind host": (["--bind", "no-such-host.invalid:8000"], {}, None, 2, "cannot resolve"),
    "REDIS_URL port 99999": ([], {"REDIS_URL": "redis://127.0.0.1:99999/0"}, None, 2, "redis.url"),
    "inf in a float setting": ([], {"CLUSTER_HEALTH_INTERVAL": "inf"}, None, 2, "health.interval"),
    "metrics.bind=garbage": ([], {"CLUSTER_METRICS_BIND": "garbage"}, None, 2, "metrics.bind"),
    "unusable state dir": ([], {}, file_in_the_way, 2, "is not usable"),
    "state dir path too long": ([], {}, long_state_dir, 2, "unix socket allows"),
}


@pytest.mark.parametrize("case", list(BAD_STARTS))
def test_a_start_that_cannot_succeed_exits_at_once_in_one_line(tmp_path: Path, case: str) -> None:
    args, env, make_dir, code, says = BAD_STARTS[case]
    state = make_dir(tmp_path) if make_dir else tmp_path / "state"
    done = bad_start(state, *args, env=env, timeout=START_DEADLINE)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith(("error: ", "config error: ")) and says in lines[0], lines
    assert leftovers(str(state)) == []
    assert not (state / "control.sock").exists()


def test_a_port_in_use_exits_at_once_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = bad_start(state := tmp_path / "state", "--bind", f"127.0.0.1:{port}", timeout=START_DEADLINE)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "cannot bind" in lines[0], lines
    assert leftovers(str(state)) == []


def test_config_check_with_app_runs_the_same_checks(tmp_path: Path) -> None:
    env = cli_env({"CLUSTER_SERVER_STATE_DIR": str(tmp_path / "state"),
                   "CLUSTER_METRICS_BIND": f"127.0.0.1:{free_port()}"})
    run = [sys.executable, "-m", "cluster.cli", "config", "check"]
    bad = subprocess.run([*run, "--app", "tests.apps.lifecycle:raising()"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=START_DEADLINE)
    assert bad.returncode == 1 and "the app cannot find its settings" in bad.stderr
    assert "lifecycle.py:" in bad.stderr  # the file:line the exception was raised at
    good = subprocess.run([*run, "--app", "tests.apps.lifecycle:own_routes()"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=START_DEADLINE)
    assert good.returncode == 0 and "GET /health is shadowed" in good.stderr, good.stderr


def test_an_app_that_fails_in_the_workers_ends_the_first_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = bad_start(state, "tests.apps.lifecycle:fails_in_workers()", timeout=START_DEADLINE)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1, done.stderr[-2000:]
    assert last.startswith("error: the HTTP tier did not start") and "no database in the workers" in last, last
    assert "lifecycle.py:" in last
    assert leftovers(str(state)) == []
    assert not (state / "control.sock").exists()


def test_the_apps_own_ping_and_health_win_and_never_trigger_a_reload(cluster_factory: Any) -> None:
    cluster = cluster_factory("tests.apps.lifecycle:own_routes()", workers=1,
                              env={"CLUSTER_HEALTH_INTERVAL": "2"})
    assert json.loads(http_get(f"{cluster.url}/ping")[2]) == {"pong": "from the app"}
    assert http_get(f"{cluster.url}/health")[2] == b"the app's own health page"
    workers = cluster.worker_pids()
    probes: set[float] = set()

    def three_probes() -> bool:
        probe = cluster.status()["health"]["last_probe"]
        if probe:
            probes.add(probe["at"])
        return len(probes) >= 4

    wait_for(three_probes, 90, 0.3, "three health intervals")
    health = cluster.status()["health"]
    assert health["reloads"] == 0 and health["consecutive_failures"] == 0 and health["last_probe"]["passed"]
    assert cluster.worker_pids() == workers
    shadowed = [line["message"] for line in cluster.logs() if "is shadowed" in line.get("message", "")]
    assert sorted(shadowed) == ["built-in route GET /health is shadowed by the app's own route (the app's wins)",
                        "built-in route GET /ping is shadowed by the app's own route (the app's wins)"]


def clean_stop_problems(cluster: ClusterProcess) -> list[str]:
    """Lines of the log that a clean stop must not have: errors, tracebacks, restarts."""
    bad = []
    for line in cluster.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # redis-server's own log lines are not JSON
            if "Traceback" in line or "rror" in line:
                bad.append(line)
            continue
        if record.get("level") in ("ERROR", "CRITICAL") or "restarting" in record.get("message", ""):
            bad.append(line)
    return bad


QUEUE_ENV = {"QUEUE_HIGH_WORKERS": "1", "QUEUE_MEDIUM_WORKERS": "0", "QUEUE_LOW_WORKERS": "0",
             "QUEUE_BACKGROUND_WORKERS": "0"}


def post_job(url: str, body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_stop_while_enqueuing_loses_no_accepted_job(cluster_factory: Any) -> None:
    cluster = cluster_factory("--jobs", "tests.queues.jobs", workers=2, queues=True, env=QUEUE_ENV)
    url = f"{cluster.url}/api/enterprise/jobs"
    accepted: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()

    def enqueue() -> None:
        while not stop.is_set():
            try:
                status, body = post_job(url, {"name": "tests.queues.jobs.incr", "args": ["lifecycle-stop"]})
            except (OSError, ValueError):  # refused or cut once the listener is closed: not accepted
                continue
            statuses.append(status)
            if status == 202:
                accepted.append(body["id"])

    bad: dict[str, Any] | bytes
    for bad in ({"name": "tests.queues.jobs.incr", "kwargs": {"self": 1}},
                b'{"name": "tests.queues.jobs.incr", "args": [' + b"[" * 980 + b"]" * 980 + b"]}",
                {"name": "tests.queues.jobs.incr", "args": ["k"], "delay": 1e300}):
        status, body = post_job(url, bad)
        assert status == 400 and body["error"], body
    queues = json.loads(http_get(f"{cluster.url}/api/enterprise/queues/status")[2])["queues"]
    assert queues["high"]["enqueued"] == 0 and queues["high"]["delayed"] == 0  # nothing was written

    loop = threading.Thread(target=enqueue)
    loop.start()
    wait_for(lambda: len(accepted) >= 20, 60, 0.1, "jobs accepted before the stop")
    assert cluster.cli("stop").returncode == 0
    stop.set()
    loop.join(60)
    assert [s for s in statuses if s >= 500] == []
    assert clean_stop_problems(cluster) == []

    again = ClusterProcess(cluster.state_dir, ["--jobs", "tests.queues.jobs"], env=QUEUE_ENV, workers=1,
                           queues=True).start()
    try:
        missing = [job for job in accepted if http_get(f"{again.url}/api/enterprise/jobs/{job}")[0] != 200]
        assert missing == [], f"{len(missing)} of {len(accepted)} accepted jobs lost"
    finally:
        again.close()


def test_sigint_to_the_process_group_stops_cleanly(tmp_path: Path) -> None:
    cluster = ClusterProcess(tmp_path / "state", ["--jobs", "tests.queues.jobs"], env=QUEUE_ENV, workers=1,
                             queues=True)
    cluster.start(new_session=True)
    try:
        tree = cluster.tree_pids()
        assert cluster.proc is not None
        os.killpg(cluster.proc.pid, signal.SIGINT)  # what Ctrl-C does in the terminal
        assert cluster.proc.wait(120) == 0
        assert clean_stop_problems(cluster) == []
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                 for p in tree), 30, 0.2, "every process of the tree to exit")
    finally:
        cluster.close()


def test_slow_and_vanishing_clients_are_4xx_and_leave_health_passing(cluster_factory: Any) -> None:
    cluster = cluster_factory("tests.apps.lifecycle:own_routes()", workers=1,
                              env={"CLUSTER_SERVER_BODY_TIMEOUT": "1", "CLUSTER_MONITORING_METRICS_INTERVAL": "1"})
    slow = []
    for _ in range(5):
        conn = socket.create_connection(("127.0.0.1", cluster.port))
        # Under server.max_body_size (a larger one is refused with 413 before its body is read).
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nab")
        slow.append(conn)
    for conn in slow:
        conn.settimeout(60)
        head = conn.recv(4096)
        assert head.startswith(b"HTTP/1.1 408") and b"application/json" in head and b"X-Request-ID" in head, head
        conn.close()
    gone = socket.create_connection(("127.0.0.1", cluster.port))
    gone.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
    time.sleep(0.2)  # not a synchronisation: the disconnect just has to come mid-body
    gone.close()
    garbage = socket.create_connection(("127.0.0.1", cluster.port))
    garbage.sendall(b"NOT\x01HTTP\r\n\r\n")
    garbage.settimeout(30)
    reply = garbage.recv(4096)
    garbage.close()
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0]
    assert b"application/json" in reply and b"X-Request-ID" in reply

    def closed_request_logged() -> bool:
        return any(line.get("status") == 499 for line in cluster.logs())

    wait_for(closed_request_logged, 60, 0.2, "the vanished client to be noted")
    probe = json.loads(http_get(f"{cluster.url}/_cluster/health")[2])
    assert probe["status"] in ("pass", "warn"), probe
    metrics = http_get(cluster.metrics_url)[2].decode()
    assert not [m for m in metrics.splitlines() if m.startswith("http_requests_total") and 'status="5' in m]
    assert not [line for line in cluster.logs() if line.get("level") == "ERROR"]


def test_a_pool_reconnecting_to_redis_stops_on_sigterm(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"redis": {"url": f"redis://127.0.0.1:{free_port()}/0"},
                                    "queues": {"jobs_module": "tests.queues.jobs"}}))
    log = tmp_path / "pool.log"
    with log.open("wb") as out:
        pool = subprocess.Popen([sys.executable, "-m", "cluster.queues.pool", str(settings), "high"], env=cli_env(),
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "connect failed" in log.read_text(), 60, 0.2, "the pool to retry Redis")
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(60) == 0
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
