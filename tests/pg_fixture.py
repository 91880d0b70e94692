"""A session-scoped real PostgreSQL primary with three streaming replicas, made by scripts/pg-cluster.

Import ``pg_cluster`` into a test folder's conftest.py. Tests that stop or pause a node must
put it back (``restore`` helps): the cluster is shared by the whole session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.config.settings import DatabaseSettings, ReplicaSettings, Settings
from tests.support import ROOT, wait_for

SCRIPT = ROOT / "scripts" / "pg-cluster"
WEIGHTS = (3, 3, 2)


class PgCluster:
    def __init__(self, description: dict[str, Any]) -> None:
        self.dir = Path(description["dir"])
        self.primary = description["primary"]
        self.replicas = description["replicas"]
        self.nodes = {n["name"]: n for n in [self.primary, *self.replicas]}

    def run(self, *args: str) -> str:
        result = subprocess.run([sys.executable, str(SCRIPT), *args, "--dir", str(self.dir)],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"pg-cluster {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def settings(self, **database: Any) -> Settings:
        """Settings for a router over this cluster (weights 3/3/2), fast health checks unless overridden."""
        values: dict[str, Any] = {
            "url": self.primary["url"],
            "replicas": [ReplicaSettings(url=r["url"], weight=w) for r, w in zip(self.replicas, WEIGHTS)],
            "health_check_interval": 0.2,
            "connect_timeout": 1.0,
            "checkout_timeout": 2.0,
            "pool_size": 4,
        }
        values.update(database)
        return Settings(database=DatabaseSettings(**values))

    def port_of(self, name: str) -> int:
        return self.nodes[name]["port"]

    def name_of(self, port: int) -> str:
        return next(n for n, node in self.nodes.items() if node["port"] == port)

    def host(self, name: str) -> str:
        """The router's name for a node."""
        return f"127.0.0.1:{self.port_of(name)}"

    def sql(self, name: str, statement: str) -> str:
        import psycopg

        with psycopg.connect(self.nodes[name]["url"], autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(statement)
            row = cursor.fetchone() if cursor.description else None
            return "" if row is None else str(row[0])

    def stop(self, name: str, mode: str = "immediate") -> None:
        self.run("node", "stop", name, "--mode", mode)

    def start(self, name: str) -> None:
        self.run("node", "start", name)

    def pause(self, name: str) -> None:
        self.sql(name, "SELECT pg_wal_replay_pause()")

    def resume(self, name: str) -> bool:
        self.sql(name, "SELECT pg_wal_replay_resume()")
        return True

    def streaming(self) -> int:
        return int(self.sql("primary", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))

    def restore(self) -> None:
        """Every node up, replay resumed everywhere, every replica streaming again."""
        status = json.loads(self.run("status"))
        for node in [status["primary"], *status["replicas"]]:
            if not node["up"]:
                self.start(node["name"])
        for replica in self.replicas:
            wait_for(lambda: self.resume(replica["name"]), 60, 0.2, f"{replica['name']} to resume replay")
        wait_for(lambda: self.streaming() == len(self.replicas), 60, 0.2, "every replica to stream")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    result = subprocess.run([sys.executable, str(SCRIPT), "start", "--replicas", str(len(WEIGHTS))],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"scripts/pg-cluster start failed: {result.stderr}")
    cluster = PgCluster(json.loads(result.stdout))
    try:
        yield cluster
    finally:
        cluster.run("stop")
