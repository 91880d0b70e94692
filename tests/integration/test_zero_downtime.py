"""Reloads, scale-downs and stops under 16 keep-alive clients fail no request.

A response with ``Connection: close`` ends a connection normally (the client
reconnects); a reset, a connection closed without a response, or a 5xx is a
failure. The app takes 5 s to build, so a reload that retired the old workers
before the new ones served would leave nobody to answer.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import ROOT, ClusterProcess, http_get, wait_for

pytestmark = pytest.mark.integration
RELOADS = 20
CLIENTS = 16
# Bounds of the load loops: requests per client (they stop sooner, when the test is done).
PER_CLIENT = 200_000


def _keepalive() -> ModuleType:
    """The keep-alive clients the reload benchmark uses (scripts/bench/_keepalive.py)."""
    spec = importlib.util.spec_from_file_location("bench_keepalive", ROOT / "scripts" / "bench" / "_keepalive.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


KeepAliveLoad = _keepalive().KeepAliveLoad


def replaced(cluster: ClusterProcess, before: set[int], count: int) -> bool:
    pids = set(cluster.worker_pids())
    return not (pids & before) and len(pids) == count


def retirements_before_serving(cluster: ClusterProcess) -> list[str]:
    """Each "retiring worker" of a reload must come after as many new workers said they serve."""
    problems, serving_since_hup, retired_since_hup = [], 0, 0
    for line in cluster.logs():
        message = str(line.get("message", ""))
        if message.startswith("Hang up"):
            serving_since_hup, retired_since_hup = 0, 0
        elif message.startswith("worker ") and message.endswith(" serves"):
            serving_since_hup += 1
        elif message.startswith("retiring worker"):
            retired_since_hup += 1
            if retired_since_hup > serving_since_hup:
                problems.append(f"{message} with {serving_since_hup} new worker(s) serving")
    return problems


@pytest.mark.timeout(1200)  # 20 reloads of an app that takes 5 s to build, on a shared 2-core machine
def test_twenty_reloads_of_a_slow_booting_app_under_keepalive_load_fail_no_request(cluster_factory: Any) -> None:
    cluster = cluster_factory("tests.apps.slow_boot:create_app()", workers=2, env={"SLOW_BOOT_SECONDS": "5"})
    with KeepAliveLoad("127.0.0.1", cluster.port, ["/ping"], clients=CLIENTS, limit=PER_CLIENT) as load:
        wait_for(lambda: load.snapshot().ok > 100, 60, 0.1, "the clients to get answers")
        for _ in range(RELOADS):
            before = set(cluster.worker_pids())
            result = cluster.cli("reload")
            assert result.returncode == 0, result.stderr
            wait_for(lambda: replaced(cluster, before, 2), 120, 0.3, "every worker to be replaced")
        counts = load.stop()
    assert [f"{f.path}: {f.error}" for f in counts.failures] == []
    assert counts.ok > 0
    # The old workers said "Connection: close" before closing: the clients reconnected instead of failing.
    assert counts.closes >= RELOADS
    assert retirements_before_serving(cluster) == []
    assert sum(1 for line in cluster.logs() if str(line.get("message", "")).startswith("retiring worker")) \
        == 2 * RELOADS


@pytest.mark.xfail(strict=False, reason="known gap: in about one run in three a scale-down under keep-alive load "
                   "still resets one or two connections (reloads and stops do not); not yet understood")
def test_scale_downs_under_keepalive_load_fail_no_request(cluster_factory: Any) -> None:
    # asyncio's accept spreads the clients' connections over the workers (uvloop's batches give most to
    # one), so the retired workers have keep-alive connections to drain.
    cluster = cluster_factory("--min-workers", "1", "--max-workers", "3", env={"CLUSTER_SERVER_EVENT_LOOP": "asyncio"})
    failures, ok, closes = [], 0, 0
    for _ in range(3):
        assert cluster.cli("scale", "3").returncode == 0
        wait_for(lambda: len(cluster.worker_pids()) == 3, 90, 0.2, "3 workers")
        # Connected now, the clients' connections are spread over the three workers.
        with KeepAliveLoad("127.0.0.1", cluster.port, ["/ping"], clients=CLIENTS, limit=PER_CLIENT) as load:
            wait_for(lambda: load.snapshot().ok > 1000, 60, 0.1, "the clients to get answers")
            assert cluster.cli("scale", "1").returncode == 0
            wait_for(lambda: len(cluster.worker_pids()) == 1, 90, 0.2, "1 worker left")
            counts = load.stop()
        failures += [f"{f.path}: {f.error}" for f in counts.failures]
        ok, closes = ok + counts.ok, closes + counts.closes
    assert failures == []
    assert ok > 0
    assert closes > 0  # the retired workers had connections, and said so before closing them


def test_a_stop_under_keepalive_load_answers_every_request_already_sent(cluster_factory: Any, tmp_path: Path) -> None:
    cluster = cluster_factory("tests.apps.slow:create_app()", workers=2)
    slow: list[tuple[int, bytes]] = []
    marks = [tmp_path / f"slow-{i}" for i in range(4)]
    threads = [threading.Thread(target=lambda m=m: slow.append(
        http_get(f"{cluster.url}/slow?seconds=3&mark={m}", timeout=60)[::2])) for m in marks]
    load = KeepAliveLoad("127.0.0.1", cluster.port, ["/hello"], clients=CLIENTS, limit=PER_CLIENT).start()
    try:
        wait_for(lambda: load.snapshot().ok > 100, 60, 0.1, "the clients to get answers")
        for thread in threads:
            thread.start()
        wait_for(lambda: all(m.exists() for m in marks), 60, 0.05, "the slow requests to reach the workers")
        result = cluster.cli("stop")
        assert result.returncode == 0, result.stderr
        assert cluster.proc is not None and cluster.proc.wait(120) == 0
    finally:
        counts = load.stop()
        for thread in threads:
            thread.join(60)
    # Every request received before the stop was answered, the slow ones too.
    assert sorted(status for status, _ in slow) == [200] * len(marks)
    assert all(json.loads(body) == {"slept": 3.0} for _, body in slow)
    # Once the listener is gone a new connection is refused or cut: that request was never received.
    # A request on a connection that had carried a response must never be cut.
    assert [f"{f.path}: {f.error}" for f in counts.failures if f.reused] == []
    assert counts.ok > 0
