"""The router against a real primary and three streaming replicas (weights 3/3/2)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from cluster.config import Settings
from cluster.observability.context import read_your_writes_var
from tests.pg_fixture import PgCluster
from tests.support import run_async, wait_for
from cluster.db import PrimaryUnavailable, Router, router_from_settings

pytestmark = pytest.mark.integration
PORT_SQL = "SELECT inet_server_port()"


def run(cluster: PgCluster, body: Callable[[Router], Awaitable[Any]], settings: Settings | None = None,
        **database: Any) -> Any:
    """Start a router over the cluster, run ``body`` with it in a fresh event loop, close it."""

    async def main() -> Any:
        router = router_from_settings(settings or cluster.settings(**database))
        assert router is not None
        await router.start()
        try:
            return await body(router)
        finally:
            await router.close()

    read_your_writes_var.set(None)
    return run_async(main)


async def read_port(router: Router) -> int:
    async with router.read() as conn:
        row = await conn.fetchone(PORT_SQL)
        return row[0]


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def host_state(router: Router, host: str) -> str:
    return router.by_name[host].state


def test_weighted_distribution_follows_3_3_2_and_interleaves(pg_cluster: PgCluster) -> None:
    reads = 4000

    async def body(router: Router) -> list[int]:
        return [await read_port(router) for _ in range(reads)]

    def routed(name: str) -> float:
        return REGISTRY.get_sample_value("cluster_db_queries_total",
                                         {"host": pg_cluster.host(name), "role": "replica"}) or 0.0

    before = {name: routed(name) for name in ("replica1", "replica2", "replica3")}
    ports = run(pg_cluster, body, strategy="weighted", health_check_interval=60)
    counts = Counter(pg_cluster.name_of(p) for p in ports)
    assert {name: routed(name) - before[name] for name in before} == {n: counts[n] for n in before}
    # Tolerance: 2 % of all reads per host. Smooth WRR is exact while every replica stays fresh;
    # the slack only absorbs a replica judged stale for a moment on this shared machine.
    for name, weight in zip(("replica1", "replica2", "replica3"), (3, 3, 2)):
        assert abs(counts[name] - reads * weight / 8) <= reads * 0.02, counts
    assert counts["primary"] == 0, counts
    longest_run = max(len(list(g)) for g in _runs(ports))
    assert longest_run <= 2, f"bursty: a host served {longest_run} reads in a row"


def _runs(items: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for item in items:
        if runs and runs[-1][0] == item:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def test_least_connections_prefers_the_idle_host(pg_cluster: PgCluster) -> None:
    async def body(router: Router) -> tuple[set[int], list[int]]:
        async with router.read() as first, router.read() as second:
            busy = {(await first.fetchone(PORT_SQL))[0], (await second.fetchone(PORT_SQL))[0]}
            later = [await read_port(router) for _ in range(20)]
        return busy, later

    busy, later = run(pg_cluster, body, strategy="least_connections", health_check_interval=60)
    replicas = {pg_cluster.port_of(n) for n in ("replica1", "replica2", "replica3")}
    assert len(busy) == 2 and busy <= replicas
    assert set(later) == replicas - busy


def test_a_replica_stopped_under_a_read_loop_costs_no_read_and_rejoins_after_restart(pg_cluster: PgCluster) -> None:
    victim = pg_cluster.host("replica2")
    victim_port = pg_cluster.port_of("replica2")

    async def body(router: Router) -> dict[str, Any]:
        stats = {"ok": 0, "failed": [], "after_stop": Counter(), "after_start": Counter()}
        phase = {"name": "before"}
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                try:
                    port = await read_port(router)
                except Exception as exc:  # counted: the test asserts there are none
                    stats["failed"].append(repr(exc))
                    continue
                stats["ok"] += 1
                if phase["name"] in ("after_stop", "after_start"):
                    stats[phase["name"]][port] += 1
                await asyncio.sleep(0)

        readers = [asyncio.create_task(loop()) for _ in range(4)]
        await until(lambda: stats["ok"] > 200, "reads to flow")
        await asyncio.to_thread(pg_cluster.stop, "replica2", "immediate")
        await until(lambda: host_state(router, victim) == "down", "the stopped replica to leave the rotation")
        phase["name"] = "after_stop"
        before = stats["ok"]
        await until(lambda: stats["ok"] > before + 300, "reads after the stop")
        phase["name"] = "restarting"
        await asyncio.to_thread(pg_cluster.start, "replica2")
        await until(lambda: host_state(router, victim) == "up", "the replica to come back", timeout=60)
        phase["name"] = "after_start"
        await until(lambda: stats["after_start"][victim_port] > 20, "reads on the restarted replica")
        stop.set()
        await asyncio.gather(*readers)
        return stats

    try:
        stats = run(pg_cluster, body)
    finally:
        pg_cluster.restore()
    assert stats["failed"] == []
    assert stats["after_stop"][victim_port] == 0
    assert stats["after_start"][victim_port] > 20


def test_a_paused_replica_is_excluded_once_over_the_lag_limits(pg_cluster: PgCluster) -> None:
    lagging = pg_cluster.host("replica1")
    lagging_port = pg_cluster.port_of("replica1")

    async def body(router: Router) -> tuple[Counter, dict[str, Any]]:
        await until(lambda: host_state(router, lagging) == "up", "every replica fresh at first")
        pg_cluster.pause("replica1")
        async with router.write() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS lag_filler (v text)")
            await conn.execute("INSERT INTO lag_filler SELECT repeat('x', 1000) FROM generate_series(1, 300)")
        await until(lambda: host_state(router, lagging) == "stale", "the paused replica to be judged stale")
        ports = Counter([await read_port(router) for _ in range(200)])
        status = next(h for h in router.status()["hosts"] if h["host"] == lagging)
        return ports, status

    try:
        ports, status = run(pg_cluster, body, max_lag_seconds=1.0, max_lag_bytes=64 * 1024)
    finally:
        pg_cluster.resume("replica1")
    assert ports[lagging_port] == 0, ports
    assert status["lag_bytes"] > 64 * 1024 and status["lag_seconds"] > 1.0
    # The others serve; the primary may too if, on a loaded machine, they fall 1 s behind for a moment.
    assert sum(ports.values()) == 200
    assert ports[pg_cluster.port_of("replica2")] + ports[pg_cluster.port_of("replica3")] > 0, ports


def test_read_your_writes_sees_the_write_with_replay_paused_everywhere(pg_cluster: PgCluster) -> None:
    marker = uuid.uuid4().hex

    pg_cluster.sql("primary", "CREATE TABLE IF NOT EXISTS ryw (marker text)")
    for replica in pg_cluster.replicas:
        wait_for(lambda: pg_cluster.sql(replica["name"], "SELECT to_regclass('ryw') IS NOT NULL") == "True",
                 30, 0.1, "the table on every replica")

    async def body(router: Router) -> tuple[Any, Any, Any]:
        for replica in pg_cluster.replicas:
            pg_cluster.pause(replica["name"])
        read_your_writes_var.set(None)
        async with router.write() as conn:
            await conn.execute("INSERT INTO ryw VALUES (%s)", (marker,))
        token = read_your_writes_var.get()
        async with router.read() as conn:
            seen = await conn.fetchone("SELECT count(*), inet_server_port() FROM ryw WHERE marker = %s "
                                       "GROUP BY 2 UNION ALL SELECT 0, inet_server_port() LIMIT 1", (marker,))
        read_your_writes_var.set(None)  # a context without the token reads a paused replica
        async with router.read() as conn:
            unseen = await conn.fetchone("SELECT count(*), inet_server_port() FROM ryw WHERE marker = %s "
                                         "GROUP BY 2 UNION ALL SELECT 0, inet_server_port() LIMIT 1", (marker,))
        return token, seen, unseen

    try:
        token, seen, unseen = run(pg_cluster, body, health_check_interval=60)
    finally:
        for replica in pg_cluster.replicas:
            pg_cluster.resume(replica["name"])
    assert set(token) == {"lsn", "at"} and "/" in token["lsn"]
    assert seen == (1, pg_cluster.port_of("primary"))
    assert unseen[0] == 0 and unseen[1] != pg_cluster.port_of("primary")


def test_a_transaction_stays_on_the_primary(pg_cluster: PgCluster) -> None:
    async def body(router: Router) -> list[tuple[Any, ...]]:
        rows = []
        async with router.transaction() as conn:
            for _ in range(5):
                cur = await conn.execute("SELECT inet_server_port(), pg_is_in_recovery(), txid_current()")
                rows.append(await cur.fetchone())
        return rows

    rows = run(pg_cluster, body)
    assert {row[0] for row in rows} == {pg_cluster.port_of("primary")}
    assert {row[1] for row in rows} == {False}
    assert len({row[2] for row in rows}) == 1, "all statements in one transaction"


def test_two_hosts_claiming_primary_refuse_writes(pg_cluster: PgCluster) -> None:
    async def body(router: Router) -> str:
        with pytest.raises(PrimaryUnavailable) as caught:
            async with router.write() as conn:
                await conn.execute("SELECT 1")
        return str(caught.value)

    settings = pg_cluster.settings()
    twin = settings.database.replicas[0].model_copy(update={"url": pg_cluster.primary["url"]})
    db = settings.database.model_copy(update={"replicas": [twin]})
    message = run(pg_cluster, body, settings.model_copy(update={"database": db}))
    assert "all claim to be primary" in message


def test_a_write_during_a_primary_outage_fails_clearly_while_reads_go_on(pg_cluster: PgCluster) -> None:
    async def body(router: Router) -> tuple[str, list[int]]:
        async with router.write() as conn:
            await conn.execute("SELECT 1")
        await asyncio.to_thread(pg_cluster.stop, "primary", "immediate")
        with pytest.raises(PrimaryUnavailable) as caught:
            async with router.write() as conn:
                await conn.execute("CREATE TABLE IF NOT EXISTS never (x int)")
        ports = [await read_port(router) for _ in range(30)]
        return str(caught.value), ports

    try:
        message, ports = run(pg_cluster, body)
    finally:
        pg_cluster.restore()
    assert "primary" in message and pg_cluster.host("primary") in message
    assert len(ports) == 30 and pg_cluster.port_of("primary") not in ports


def test_a_read_cancelled_by_a_recovery_conflict_is_retried_on_another_host(pg_cluster: PgCluster) -> None:
    pg_cluster.sql("primary", "CREATE TABLE IF NOT EXISTS conflicted (v int)")
    pg_cluster.sql("replica1", "ALTER SYSTEM SET max_standby_streaming_delay = 0")
    pg_cluster.sql("replica1", "SELECT pg_reload_conf()")
    for replica in ("replica1", "replica2"):
        wait_for(lambda: pg_cluster.sql(replica, "SELECT to_regclass('conflicted') IS NOT NULL") == "True",
                 30, 0.1, "the table on the replicas")
    wait_for(lambda: pg_cluster.sql("replica1", "SHOW max_standby_streaming_delay") == "0", 30, 0.1, "the reload")
    conflicting = pg_cluster.host("replica1")

    async def body(router: Router) -> tuple[Any, dict[str, Any]]:
        async def slow_read() -> Any:
            async with router.read() as conn:
                # Holds a lock on the table on the replica while the primary truncates it.
                return await conn.fetchone("SELECT inet_server_port(), (SELECT count(*) FROM conflicted), "
                                           "pg_sleep(1.5)::text")

        reading = asyncio.create_task(slow_read())
        await until(lambda: router.by_name[conflicting].queries > 0, "the read to start on replica1")
        # The read holds its lock once replica1 runs it: wait for that, not for a guessed while.
        running = ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                   "AND query LIKE '%pg_sleep(1.5)%' AND pid <> pg_backend_pid()")
        deadline = time.monotonic() + 30
        while await asyncio.to_thread(pg_cluster.sql, "replica1", running) == "0":
            assert time.monotonic() < deadline, "the read never ran on replica1"
        await asyncio.to_thread(pg_cluster.sql, "primary", "TRUNCATE conflicted")
        row = await reading
        return row, next(h for h in router.status()["hosts"] if h["host"] == conflicting)

    replicas = pg_cluster.settings().database.replicas[:2]
    try:
        row, status = run(pg_cluster, body, strategy="round_robin", replicas=replicas, health_check_interval=60)
    finally:
        pg_cluster.sql("replica1", "ALTER SYSTEM RESET max_standby_streaming_delay")
        pg_cluster.sql("replica1", "SELECT pg_reload_conf()")
    assert row[0] == pg_cluster.port_of("replica2")
    assert status["errors"] == 1 and "conflict with recovery" in status["last_error"]
    assert status["state"] == "up", "a recovery conflict does not take the host out"


def test_a_read_only_answer_from_the_primary_re_probes_the_roles_at_once(pg_cluster: PgCluster) -> None:
    primary, replica = pg_cluster.host("primary"), pg_cluster.host("replica1")

    async def body(router: Router) -> tuple[str, str | None]:
        # The router's view goes stale as after a failover it has not seen yet: it takes a
        # replica for the primary. Health checks are a minute apart, so only 25006 can fix it.
        router.by_name[primary].role, router.by_name[replica].role = "replica", "primary"
        router.rebuild_routing()
        assert router.routing.writer == replica
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            async with router.write() as conn:
                await conn.execute("CREATE TABLE IF NOT EXISTS never_on_a_replica (x int)")
        await until(lambda: router.routing.writer == primary, "the roles to be re-probed")
        async with router.write() as conn:
            cur = await conn.execute("SELECT inet_server_port()")
            port = (await cur.fetchone())[0]
        return str(port), router.routing.write_refusal

    port, refusal = run(pg_cluster, body, health_check_interval=60)
    assert port == str(pg_cluster.port_of("primary")) and refusal is None


def test_read_your_writes_reads_a_replica_once_it_has_replayed_the_write(pg_cluster: PgCluster) -> None:
    marker = uuid.uuid4().hex
    pg_cluster.sql("primary", "CREATE TABLE IF NOT EXISTS ryw (marker text)")

    async def body(router: Router) -> Any:
        read_your_writes_var.set(None)
        async with router.write() as conn:
            await conn.execute("INSERT INTO ryw VALUES (%s)", (marker,))
        token = read_your_writes_var.get()
        for replica in pg_cluster.replicas:  # health checks are a minute apart: the router cannot know this
            await until(lambda: pg_cluster.sql(replica["name"], "SELECT pg_last_wal_replay_lsn() >= "
                                               f"'{token['lsn']}'::pg_lsn") == "True", "replicas to replay the write")
        async with router.read() as conn:
            seen = await conn.fetchone("SELECT count(*), inet_server_port() FROM ryw WHERE marker = %s GROUP BY 2",
                                       (marker,))
        return seen

    seen = run(pg_cluster, body, health_check_interval=60)
    assert seen[0] == 1 and seen[1] != pg_cluster.port_of("primary"), seen
