"""The first minute (issue 32): the quotes demo under `cluster start`, and `make run`'s script.

The demo (examples/quotes) runs with its jobs module, the four pools and the embedded Redis,
and a real PostgreSQL primary with three streaming replicas (weights 3/3/2): every route
answers, a job enqueued through a route runs on its pool, the router reads on replicas, and
the output of the start is ours alone (no redis-server line, the ready line names every
address). scripts/run-demo, where PostgreSQL's binaries cannot be found, still serves and
says in one line what it skipped, and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.pg_fixture import WEIGHTS, PgCluster, pg_cluster  # noqa: F401  (the session's primary + replicas)
from tests.support import ROOT, ClusterProcess, cli_env, free_port, http_get, wait_for

pytestmark = pytest.mark.integration
EXAMPLES = ROOT / "examples"
DEMO = ("quotes.app:make_app()", "--jobs", "quotes.jobs")
POOLS = {"queue-high": 4, "queue-medium": 3, "queue-low": 2, "queue-background": 1}
# redis-server's own format: "8320:M 07 Dec 2026 13:03:45.946 # Server initialized", and its logo.
REDIS_LINE = re.compile(r"^\d+:[XCSM] \d{1,2} \w{3} \d{4} [\d:.]+ [.\-*#] ")
REDIS_LOGO = ("_._", "`-._", "Redis is starting", "Running in standalone mode")


def post_json(url: str, body: Any) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def get_json(url: str) -> tuple[int, Any]:
    status, _, body = http_get(url, timeout=30)
    return status, json.loads(body)


def router_env(pg: PgCluster) -> dict[str, str]:
    env = {"DATABASE_URL": pg.primary["url"], "REPLICA_HEALTH_CHECK_INTERVAL": "300"}
    for i, (replica, weight) in enumerate(zip(pg.replicas, WEIGHTS), 1):
        env[f"DB_READ_REPLICA_{i}"] = replica["url"]
        env[f"DB_READ_REPLICA_{i}_WEIGHT"] = str(weight)
    return env


def finished(url: str, job_id: str) -> dict[str, Any] | None:
    status, body = get_json(f"{url}/api/enterprise/jobs/{job_id}")
    return body if status == 200 and body.get("state") == "done" else None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, pg_cluster: PgCluster):  # noqa: F811
    """The demo served by `cluster start`, its jobs module, every pool, Redis and the router over pg_cluster.

    One start for the module's tests (ten pool processes and a Redis on two shared cores).
    """
    env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT)]), **router_env(pg_cluster)}
    state = tmp_path_factory.mktemp("first-minute") / "state"
    cluster = ClusterProcess(state, list(DEMO), env=env, workers=2, queues=True)
    try:
        yield cluster.start()
    finally:
        cluster.close()


def test_the_demo_serves_every_part(demo: ClusterProcess, pg_cluster: PgCluster) -> None:  # noqa: F811
    url = demo.url
    status, index = get_json(url + "/")
    assert status == 200 and "POST /api/orders" in index["routes"]

    # The four pools at their default sizes: 10 queue processes.
    rows = demo.status()["processes"]
    counts = {group: sum(1 for r in rows if r["group"] == group and r["pid"]) for group in POOLS}
    assert counts == POOLS

    # A cached read: the second call within the TTL is the first one's value.
    first = wait_for(lambda: get_json(url + "/api/quotes/aapl"), 30, 0.2, "a quote")
    assert first[0] == 200 and first[1]["symbol"] == "AAPL"
    assert wait_for(lambda: get_json(url + "/api/quotes/AAPL")[1] == get_json(url + "/api/quotes/AAPL")[1],
                    30, 0.1, "a cache hit")
    assert get_json(url + "/api/quotes/not-a-symbol")[0] == 400

    # A high-priority job through the order route runs on the high pool and records its trade.
    status, _, order = post_json(url + "/api/orders", {"symbol": "MSFT", "side": "buy", "qty": 7})
    assert status == 202 and order["queue"] == "high"
    done = wait_for(lambda: finished(url, order["job_id"]), 60, 0.2, "the order to be filled")
    fill = done["result"]
    high = {r["pid"] for r in demo.status()["processes"] if r["group"] == "queue-high"}
    assert fill["filled_by"] in high and fill["qty"] == 7 and fill["trade_id"] is not None

    # Background work runs on its own pool.
    status, _, refresh = post_json(url + "/api/quotes/refresh", {})
    assert status == 202 and refresh["queue"] == "background"
    assert len(wait_for(lambda: finished(url, refresh["job_id"]), 60, 0.2, "the refresh")["result"]["refreshed"]) == 8

    # A write through the router lands on the primary; reads through it come from the replicas.
    status, _, trade = post_json(url + "/api/trades", {"symbol": "MSFT", "side": "sell", "qty": 3})
    assert status == 201

    def read_back() -> dict[str, Any] | None:
        body = get_json(url + "/api/trades/MSFT")[1]
        ids = {t["id"] for t in body["trades"]}
        return body if {trade["id"], fill["trade_id"]} <= ids and body["served_by"]["replica"] else None

    body = wait_for(read_back, 60, 0.2, "both trades read back from a replica")
    assert body["served_by"]["port"] in {r["port"] for r in pg_cluster.replicas}
    status, _, bad = post_json(url + "/api/trades", {"symbol": "MSFT", "side": "hold", "qty": 3})
    assert status == 400 and "side" in bad["error"]


def test_the_order_route_is_rate_limited(demo: ClusterProcess) -> None:
    # Bodies that are refused (400) still count: nothing is enqueued while the limit is probed.
    answers = [post_json(demo.url + "/api/orders", {"symbol": "MSFT"}) for _ in range(60)]
    limited = [a for a in answers if a[0] == 429]
    assert limited, [a[0] for a in answers]
    assert "Retry-After" in limited[0][1] and limited[0][2]["error"]
    assert {a[0] for a in answers} <= {400, 429}


def test_the_start_speaks_one_language_and_names_every_address(demo: ClusterProcess) -> None:
    lines = [line for line in demo.log_path.read_text(errors="replace").splitlines() if line.strip()]
    for line in lines:
        assert not REDIS_LINE.match(line) and not any(mark in line for mark in REDIS_LOGO), line
        json.loads(line)  # every line is one of ours (the start logs JSON when not on a terminal)
    records = demo.logs()
    overcommit = [r for r in records if "overcommit" in r["message"]]
    assert len(overcommit) <= 1  # one line of ours on a host with overcommit off, with its fix
    if overcommit:
        (said,) = overcommit
        assert said["logger"] == "cluster.redis" and "sysctl vm.overcommit_memory=1" in said["message"]
    assert (demo.state_dir / "redis.log").read_text().count("Server initialized") == 1  # Redis's own words, kept
    ready = [r for r in records if r["message"].startswith("cluster ready")]
    assert len(ready) == 1
    line = ready[0]["message"]
    metrics = f"http://127.0.0.1:{demo.metrics_port}"
    assert f"app {demo.url}/" in line
    assert f"dashboard {metrics}/dashboard/" in line and f"metrics {metrics}/metrics" in line
    assert f"control socket {demo.state_dir / 'control.sock'}" in line and "CLUSTER_ADMIN_TOKEN" in line
    assert http_get(f"{metrics}/dashboard/")[0] == 200  # the address named is the dashboard's


def test_run_demo_without_postgres_serves_says_so_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port()
    nowhere = tmp_path / "no-postgres"
    nowhere.mkdir()
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep) if "postgresql" not in d)
    env = cli_env({"PATH": path, "PG_BIN": str(nowhere), "CLUSTER_METRICS_BIND": f"127.0.0.1:{metrics}"})
    env.pop("DATABASE_URL", None)
    out = tmp_path / "run-demo.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run-demo"), "--",
             "--bind", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state"), "--workers", "1"],
            env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "cluster ready" in out.read_text(errors="replace") or proc.poll() is not None,
                 120, 0.2, "the ready line")
        assert proc.poll() is None, out.read_text()
        url = f"http://127.0.0.1:{port}"
        assert get_json(url + "/api/quotes/NVDA")[0] == 200
        status, body = get_json(url + "/api/trades/NVDA")
        assert status == 503 and "no database is configured" in body["error"]
        skipped = [line for line in out.read_text().splitlines() if "PostgreSQL" in line]
        assert len(skipped) == 1 and "skipping" in skipped[0], skipped
        tree = {proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))}
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does in the terminal
        assert proc.wait(90) == 0, out.read_text()[-2000:]
        alive = [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert alive == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
