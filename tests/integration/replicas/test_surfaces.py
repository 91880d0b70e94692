"""The router inside a real cluster: /health, the status endpoint, `cluster replicas status`."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cluster.config import Settings

from tests.pg_fixture import PgCluster
from tests.support import ClusterProcess, http_get, run_async, run_cli, wait_for
from cluster.workers.app import build_app
from cluster.workers.db_routes import DB_KEY

pytestmark = pytest.mark.integration


def db_env(pg: PgCluster) -> dict[str, str]:
    env = {"DATABASE_URL": pg.primary["url"], "REPLICA_HEALTH_CHECK_INTERVAL": "200"}
    for i, replica in enumerate(pg.replicas, 1):
        env[f"DB_READ_REPLICA_{i}"] = replica["url"]
        env[f"DB_READ_REPLICA_{i}_WEIGHT"] = str((3, 3, 2)[i - 1])
    return env


def test_a_cluster_with_a_database_reports_its_hosts_everywhere(
        pg_cluster: PgCluster, cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory(env=db_env(pg_cluster), workers=1)
    code, _, body = http_get(f"{cluster.url}/health")
    health = json.loads(body)
    assert code == 200 and health["checks"]["database"][0]["status"] == "pass", health
    assert health["checks"]["database"][0]["observedValue"] == 4

    code, _, body = http_get(f"{cluster.url}/api/enterprise/replicas/status")
    status = json.loads(body)
    assert code == 200 and status["enabled"] and status["writer"] == pg_cluster.host("primary")
    assert [h["weight"] for h in status["hosts"]] == [1, 3, 3, 2]
    assert {h["role"] for h in status["hosts"][1:]} == {"replica"}
    assert all(h["connections"]["max"] == 10 for h in status["hosts"])

    result = cluster.cli("replicas", "status", "--json")
    assert result.returncode == 0, result.stderr
    from_cli = json.loads(result.stdout)
    assert [h["host"] for h in from_cli["hosts"]] == [h["host"] for h in status["hosts"]]
    table = cluster.cli("replicas", "status")
    assert table.returncode == 0 and pg_cluster.host("replica3") in table.stdout

    try:
        for replica in pg_cluster.replicas:
            pg_cluster.stop(replica["name"])

        def warned() -> bool:
            checks = json.loads(http_get(f"{cluster.url}/health")[2])["checks"]
            return checks["database"][0]["status"] == "warn"

        wait_for(warned, 60, 0.2, "/health to warn with every replica down")
        code, _, body = http_get(f"{cluster.url}/health")
        assert code == 200 and "stale or down" in json.loads(body)["checks"]["database"][0]["output"]
    finally:
        pg_cluster.restore()


def test_without_a_database_the_router_is_off_and_health_leaves_it_out() -> None:
    async def main() -> tuple[dict, int, dict]:
        app = await build_app(Settings())
        assert DB_KEY not in app
        async with TestClient(TestServer(app)) as client:
            health = await (await client.get("/health")).json(content_type=None)
            response = await client.get("/api/enterprise/replicas/status")
            return health, response.status, await response.json()

    health, code, status = run_async(main)
    assert "database" not in health["checks"] and "worker" in health["checks"]
    assert code == 200 and status["enabled"] is False
    result = run_cli("replicas", "status", "--probe", env={"DATABASE_URL": ""})
    assert result.returncode == 0 and "router off" in result.stdout, result.stderr
