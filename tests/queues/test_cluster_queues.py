"""Through a real `cluster start`: embedded redis-server, pools as supervised children, HTTP surfaces."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cluster.queues.keys import QueueKeys
from tests.support import ClusterProcess, http_get, wait_for

pytestmark = pytest.mark.integration


def http_post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_jobs_over_http_run_in_supervised_pools(cluster_factory: Callable[..., ClusterProcess]) -> None:
    env = {"QUEUE_HIGH_WORKERS": "1", "QUEUE_MEDIUM_WORKERS": "1", "QUEUE_LOW_WORKERS": "0",
           "QUEUE_BACKGROUND_WORKERS": "0", "CLUSTER_QUEUES_BACKGROUND_MAX_SIZE": "1"}
    cluster = cluster_factory("--jobs", "tests.queues.jobs", env=env, workers=1, queues=True)
    jobs = f"{cluster.url}/api/enterprise/jobs"

    status, _, body = http_post(jobs, {"name": "tests.queues.jobs.mark", "args": ["http", "hello"]},
                                {"X-Request-ID": "req-queues-1"})
    assert status == 202 and body["queue"] == "high", body
    job = wait_for(lambda: (j := json.loads(http_get(f"{jobs}/{body['id']}")[2])).get("state") == "done" and j,
                   60, 0.2, "the job to complete")
    assert job["result"] == "hello" and job["attempts"] == 1 and job["request_id"] == "req-queues-1"
    assert any(line.get("message") == "marked hello" and line.get("request_id") == "req-queues-1"
               and line.get("role") == "queue-high" for line in cluster.logs())

    assert http_post(jobs, {"name": "no.such.job"})[0] == 400
    assert http_post(jobs, b"{nope")[0] == 400
    assert http_post(jobs, {"name": "tests.queues.jobs.add", "args": "1,2"})[0] == 400
    assert http_get(f"{jobs}/unknown-id")[0] == 404

    first = http_post(jobs, {"name": "tests.queues.jobs.slow_mark", "args": ["k", "v", 0]})
    full = http_post(jobs, {"name": "tests.queues.jobs.slow_mark", "args": ["k", "v", 0]})
    assert first[0] == 202 and full[0] == 429 and full[1].get("Retry-After") == "1", full

    code, _, raw = http_get(f"{cluster.url}/api/enterprise/queues/status")
    queues = json.loads(raw)["queues"]
    assert code == 200 and queues["high"]["processed"] == 1 and queues["background"]["depth"] == 1
    health = json.loads(http_get(f"{cluster.url}/health")[2])
    assert health["checks"]["queues"][0]["status"] == "pass"

    groups = {row["group"]: row for row in cluster.status()["processes"]}
    assert groups["queue-high"]["pid"] and groups["queue-medium"]["pid"] and groups["redis"]["pid"]
    cli = cluster.cli("queues", "status", "--json")
    assert cli.returncode == 0 and json.loads(cli.stdout)["high"]["processed"] == 1, cli.stderr


def test_without_redis_server_the_queue_tier_is_off_and_health_says_so(
        cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory(env={"PATH": "/nonexistent"}, workers=1, queues=True)  # no redis-server to be found
    status = cluster.status()
    assert status["queues"]["mode"] == "off" and "redis-server is not installed" in status["queues"]["reason"]
    assert not [row for row in status["processes"] if row["group"].startswith("queue-")]
    health = json.loads(http_get(f"{cluster.url}/health")[2])
    assert health["status"] == "warn" and "queue tier off" in health["checks"]["queues"][0]["output"]
    assert any("queue tier off" in line.get("message", "") for line in cluster.logs())


def test_supervisor_killed_with_jobs_in_flight_every_job_runs_once(
        cluster_factory: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    env = {"QUEUE_HIGH_WORKERS": "1", "QUEUE_MEDIUM_WORKERS": "1", "QUEUE_LOW_WORKERS": "0",
           "QUEUE_BACKGROUND_WORKERS": "0"}
    cluster = cluster_factory("--jobs", "tests.queues.jobs", env=env, workers=1, queues=True)
    url = json.loads((cluster.state_dir / "settings.json").read_text())["redis"]["url"]
    r = redis.Redis.from_url(url, decode_responses=True)
    ids = []
    for i in range(6):
        status, _, body = http_post(f"{cluster.url}/api/enterprise/jobs",
                                    {"name": "tests.queues.jobs.count_run", "args": ["ran", 3.0]})
        assert status == 202, body
        ids.append(body["id"])
    wait_for(lambda: r.llen("ran") == 6, 60, 0.1, "every job to be running")
    assert cluster.proc is not None
    cluster.proc.kill()  # SIGKILL: no orderly stop; the consumers get SIGTERM from the kernel
    cluster.proc.wait(30)

    again = ClusterProcess(cluster.state_dir, ["--jobs", "tests.queues.jobs"], env=env, workers=1, queues=True)
    again.log_path = tmp_path / "second-start.log"
    try:
        again.start()
        # The embedded Redis has a fresh password each start: read its URL again.
        url = json.loads((cluster.state_dir / "settings.json").read_text())["redis"]["url"]
        r = redis.Redis.from_url(url, decode_responses=True)
        wait_for(lambda: all(r.hget(QueueKeys("medium").job(i), "state") == "done" for i in ids), 60, 0.2,
                 "every job to be done")
        runs = Counter(value.split(":")[0] for value in r.lrange("ran", 0, -1))
        assert runs == Counter({i: 1 for i in ids}), f"duplicates: {runs}"
    finally:
        again.close()
