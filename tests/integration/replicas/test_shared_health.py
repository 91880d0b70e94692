"""One health connection per database host for a whole `cluster start`: the supervisor probes,
the HTTP workers and queue pool processes follow its view.

Real PostgreSQL primary + streaming replicas, a real cluster with 8 HTTP workers and the
queue tier (10 pool processes, each with a router); connections counted in pg_stat_activity.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

import psycopg
import pytest

from tests.integration.replicas.test_surfaces import db_env
from tests.pg_fixture import PgCluster
from tests.support import ClusterProcess, http_get, wait_for

pytestmark = pytest.mark.integration

WORKERS = 8
POOL_PROCESSES = 10
HEALTH = "cluster-db-health"
POOL = "cluster"
STATUS = "/api/enterprise/replicas/status"


def connections(pg: PgCluster, node: str) -> dict[str, int]:
    """Client connections on ``node`` by application_name (ours start with 'cluster')."""
    with psycopg.connect(pg.nodes[node]["url"], autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT application_name, count(*) FROM pg_stat_activity "
                            "WHERE backend_type = 'client backend' AND application_name LIKE 'cluster%' "
                            "GROUP BY 1").fetchall()
    return {name: count for name, count in rows}


def statuses(cluster: ClusterProcess, count: int) -> list[dict]:
    return [json.loads(http_get(f"{cluster.url}{STATUS}")[2]) for _ in range(count)]


def state_of(status: dict, host: str) -> str:
    return next(h["state"] for h in status["hosts"] if h["host"] == host)


def test_the_supervisor_alone_probes_and_every_process_follows_its_view(
        pg_cluster: PgCluster, cluster_factory: Callable[..., ClusterProcess]) -> None:
    env = {**db_env(pg_cluster), "REPLICA_HEALTH_CHECK_INTERVAL": "500"}
    cluster = cluster_factory("--jobs", "tests.integration.replicas.db_jobs", env=env, workers=WORKERS, queues=True)
    # Every worker and pool process has opened its pool (one connection per host at least).
    wait_for(lambda: connections(pg_cluster, "primary").get(POOL, 0) >= WORKERS + POOL_PROCESSES, 120, 0.5,
             "every worker and pool process to open its pool on the primary")
    counts = connections(pg_cluster, "primary")
    print(f"\nconnections on the primary with {WORKERS} workers + {POOL_PROCESSES} pool processes: {counts}")
    assert counts.get(HEALTH) == 1, counts
    for replica in pg_cluster.replicas:
        assert connections(pg_cluster, replica["name"]).get(HEALTH) == 1
    assert all(s["health_source"] == "supervisor" for s in statuses(cluster, 16))
    view = cluster.state_dir / "db-health.json"
    assert oct(view.stat().st_mode & 0o777) == "0o600"

    down = pg_cluster.host("replica3")
    try:
        pg_cluster.stop("replica3")

        def every_worker_sees_it_down() -> bool:
            seen = statuses(cluster, 16)
            return all(state_of(s, down) == "down" and down not in s["fresh_replicas"] for s in seen)

        wait_for(every_worker_sees_it_down, 60, 0.2, "the workers to take replica3 out")
        assert connections(pg_cluster, "primary").get(HEALTH) == 1
        supervisor = cluster.status()["db-health"]
        assert next(h for h in supervisor["hosts"] if h["host"] == down)["ok"] is False
    finally:
        pg_cluster.restore()
    wait_for(lambda: all(state_of(s, down) == "up" for s in statuses(cluster, 16)), 60, 0.2,
             "the workers to take replica3 back")

    # A supervisor that stops publishing: its children probe for themselves, then hand back.
    assert cluster.proc is not None
    os.kill(cluster.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: connections(pg_cluster, "primary").get(HEALTH, 0) > 1, 60, 0.2,
                 "the children to probe for themselves while the view is stale")
        # Each process notices on its own round: the pools may be first, the HTTP workers follow.
        wait_for(lambda: any(s["health_source"] == "own probes" for s in statuses(cluster, 16)), 60, 0.2,
                 "an HTTP worker to say it probes for itself")
    finally:
        os.kill(cluster.proc.pid, signal.SIGCONT)
    wait_for(lambda: connections(pg_cluster, "primary").get(HEALTH, 0) == 1, 60, 0.2,
             "the workers to follow the view again and close their own probes")
