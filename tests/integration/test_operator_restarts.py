"""An operator's recycle or restart is recorded as such, on a real `cluster start` (issue 25).

Recycles of HTTP workers (through the CLI and the dashboard's form) and a
queue pool restart from the control API go through the supervisor's command
loop: they are counted as ``recycled`` / ``restarted``, never as crashes, get
no backoff and never make a crash loop, so the autoscaler keeps deciding. A
kill -9 is still a crash, with backoff.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.support import ClusterProcess, wait_for

pytestmark = pytest.mark.integration
FAST_AUTOSCALE = {
    "CLUSTER_AUTOSCALE_SAMPLE_INTERVAL": "0.5",
    "CLUSTER_AUTOSCALE_WARMUP": "1",
    # Five failures in a minute is the crash loop: six recycles would make one if they counted.
    "CLUSTER_RESTART_CRASH_LOOP_DEATHS": "5",
    "CLUSTER_RESTART_CRASH_LOOP_WINDOW": "600",
}


def _replaced(cluster: ClusterProcess, pid: int, count: int) -> list[int]:
    """The workers once ``pid`` is gone and ``count`` others run."""
    pids = cluster.worker_pids()
    return pids if pid not in pids and len(pids) == count else []


def _recycle_from_the_dashboard(cluster: ClusterProcess, pid: int) -> dict[str, Any]:
    """What the page's recycle button does: its CSRF token from the page, then the form's POST."""
    base = cluster.metrics_url.rsplit("/", 1)[0]
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{base}/dashboard/", timeout=30) as page:
        html = page.read().decode()
    token = re.search(r'<meta name="csrf" content="([^"]+)"', html)
    assert token, "the local operator's page carries a CSRF token"
    form = urllib.parse.urlencode({"csrf": token.group(1), "pid": str(pid)}).encode()
    request = urllib.request.Request(f"{base}/dashboard/action/recycle", data=form, method="POST", headers={
        "Origin": base, "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"})
    with opener.open(request, timeout=30) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return body


def test_recycles_are_counted_as_recycled_and_the_autoscaler_still_decides(
        cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory(env=FAST_AUTOSCALE, workers=2)
    for _ in range(6):
        pid = cluster.worker_pids()[0]
        result = cluster.cli("workers", "recycle", str(pid))
        assert result.returncode == 0, result.stderr
        wait_for(lambda: _replaced(cluster, pid, 2), 60, 0.2, f"worker {pid} to be replaced")
    pid = cluster.worker_pids()[0]
    assert _recycle_from_the_dashboard(cluster, pid) == {"recycled": pid}
    wait_for(lambda: _replaced(cluster, pid, 2), 60, 0.2, f"worker {pid} to be replaced")

    workers = wait_for(lambda: (w := cluster.status()["workers"])["exits"] == 7 and w, 60, 0.2, "7 exit reports")
    assert workers["exit_reasons"] == {"recycled": 7}, workers
    recycled_at = time.time()
    autoscaler = wait_for(lambda: (a := cluster.status()["autoscaler"])["last_decision"]["at"] > recycled_at and a,
                          60, 0.2, "a decision after the recycles")
    assert autoscaler["signals"]["crash_looping"] is False, autoscaler
    assert "crash" not in autoscaler["last_decision"]["reason"], autoscaler
    assert not [r for r in cluster.logs() if "left: crashed" in r.get("message", "")]
    assert cluster.cli("workers", "recycle", "1").returncode != 0, "pid 1 is no HTTP worker"

    # A worker killed outright is still a crash.
    pid = cluster.worker_pids()[0]
    os.kill(pid, signal.SIGKILL)
    workers = wait_for(lambda: (w := cluster.status()["workers"])["exits"] == 8 and w, 60, 0.2, "the crash's report")
    assert workers["exit_reasons"] == {"recycled": 7, "crashed": 1}, workers
    assert [r for r in cluster.logs() if r.get("message") == f"http worker {pid} left: crashed"]


POOLS = {"QUEUE_HIGH_WORKERS": "1", "QUEUE_MEDIUM_WORKERS": "0", "QUEUE_LOW_WORKERS": "0",
         "QUEUE_BACKGROUND_WORKERS": "0",
         # A backoff no wait below outlasts: a restart that waited for it would time the test out.
         "CLUSTER_RESTART_BACKOFF_INITIAL": "600", "CLUSTER_RESTART_BACKOFF_MAX": "600",
         "CLUSTER_RESTART_CRASH_LOOP_DEATHS": "3", "CLUSTER_RESTART_CRASH_LOOP_WINDOW": "600"}


def _pool(cluster: ClusterProcess) -> dict[str, Any]:
    row: dict[str, Any] = next(r for r in cluster.status()["processes"] if r["name"] == "queue-high-0")
    return row


def test_a_pool_restart_is_at_once_and_no_crash_while_a_kill_is_one_with_backoff(
        cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory("--jobs", "tests.queues.jobs", env=POOLS, workers=1, queues=True)
    for restart in range(1, 5):  # more than crash_loop_deaths
        old = wait_for(lambda: (r := _pool(cluster))["state"] == "running" and r["pid"], 60, 0.2, "the pool")
        result = cluster.cli("queues", "restart", "high")
        assert result.returncode == 0 and "queue-high-0" in result.stdout, result.stderr
        row = wait_for(lambda: (r := _pool(cluster))["state"] == "running" and r["pid"] != old and r, 60, 0.2,
                       "the pool restarted, not held back by a 600 s backoff")
        assert row["exit_reasons"] == {"restarted": restart} and row["crash_loop"] is False, row
    assert not [r for r in cluster.logs() if r.get("child") == "queue-high-0" and r.get("level") in ("ERROR", "CRITICAL")]

    os.kill(row["pid"], signal.SIGKILL)
    row = wait_for(lambda: (r := _pool(cluster))["state"] == "backoff" and r, 60, 0.2, "the killed pool's backoff")
    assert row["exit_reasons"] == {"restarted": 4, "crashed": 1} and row["pid"] is None, row
    crash = [r for r in cluster.logs() if r.get("child") == "queue-high-0" and r.get("reason") == "crashed"]
    assert crash and crash[0]["restart_delay"] == 600 and crash[0]["exit_code"] == -signal.SIGKILL, crash
    # A restart asked for now finds no process to restart: it does not cut the backoff short.
    assert cluster.cli("queues", "restart", "high").returncode != 0
