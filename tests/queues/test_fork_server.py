"""Pool processes forked by the fork server (``queues.fork_server``) of a real `cluster start`.

They are the supervisor's children (it is their subreaper), run jobs, are
restarted and have their jobs claimed at once after a kill -9, outlive a
killed fork server, and share the preloaded pages a spawned pool holds alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest
import redis

from cluster.supervisor import forked
from cluster.supervisor.children import ChildSpec, SupervisedChild
from cluster.supervisor.restart_policy import RestartDecision
from cluster.config import Settings
from cluster.queues.client import SyncQueueClient
from cluster.queues.keys import QueueKeys
from cluster.queues.policy import lease_seconds
from tests.support import ClusterProcess, cli_env, run_async, wait_for

pytestmark = pytest.mark.integration
POOLS = {"QUEUE_HIGH_WORKERS": "1", "QUEUE_MEDIUM_WORKERS": "1", "QUEUE_LOW_WORKERS": "0",
         "QUEUE_BACKGROUND_WORKERS": "0", "CLUSTER_QUEUES_MEDIUM_TIMEOUT": "60"}


def _rows(cluster: ClusterProcess) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in cluster.status()["processes"]}


def _running(cluster: ClusterProcess, name: str, not_pid: int | None = None) -> int:
    """The pid of child ``name`` once it runs (and is not ``not_pid``)."""
    def pid() -> int | None:
        row = _rows(cluster).get(name, {})
        return row["pid"] if row.get("state") == "running" and row.get("pid") not in (None, not_pid) else None
    found: int = wait_for(pid, 60, 0.2, f"{name} to run")
    return found


def _forked_by_the_supervisor(cluster: ClusterProcess, pid: int) -> bool:
    """The supervisor is the process's parent, and it was forked by the fork server (its command line)."""
    assert cluster.proc is not None
    proc = psutil.Process(pid)
    return proc.ppid() == cluster.proc.pid and "cluster.queues.fork_server" in proc.cmdline()


def _settings(cluster: ClusterProcess) -> Settings:
    return Settings.model_validate_json((cluster.state_dir / "settings.json").read_text())


def _shared_and_private_kib(pid: int) -> tuple[int, int]:
    """Shared (clean + dirty) and private (clean + dirty) memory of a process, from smaps_rollup."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[key] = int(rest.split()[0])
    return (fields["Shared_Clean"] + fields["Shared_Dirty"], fields["Private_Clean"] + fields["Private_Dirty"])


def test_forked_pools_are_the_supervisors_children_and_survive_kills(
        cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory("--jobs", "tests.queues.jobs", env=POOLS, workers=1, queues=True)
    assert cluster.status()["queues"]["pool_start"] == "fork-server"
    settings = _settings(cluster)
    r = redis.Redis.from_url(settings.redis.url or "", decode_responses=True)
    client = SyncQueueClient(settings)

    # A job runs in a forked pool, whose parent is the supervisor.
    victim = client.enqueue("tests.queues.jobs.hang_first", "victim")
    job_id, _, _, pid = wait_for(lambda: r.lrange("victim", 0, -1), 60, 0.1, "the job to start")[0].split(":")
    assert job_id == victim.id and int(pid) == _running(cluster, "queue-medium-0")
    assert _forked_by_the_supervisor(cluster, int(pid))

    # kill -9 that pool: a fresh one is forked and claims the job at once (long before its lease).
    os.kill(int(pid), signal.SIGKILL)
    killed_at = time.time()
    wait_for(lambda: r.hget(QueueKeys("medium").job(victim.id), "state") == "done", 60, 0.1, "the job to rerun")
    rerun = r.lrange("victim", 0, -1)[1].split(":")
    lease = lease_seconds(settings.queues.medium.timeout, (), settings.queues.kill_grace)
    assert float(rerun[2]) - killed_at < lease and rerun[1] == "1", (rerun, lease)
    assert int(rerun[3]) == _running(cluster, "queue-medium-0", not_pid=int(pid))
    assert _forked_by_the_supervisor(cluster, int(rerun[3]))
    wait_for(lambda: not psutil.pid_exists(int(pid)), 30, 0.1, "the killed pool to be reaped (no zombie left)")
    assert _rows(cluster)["queue-medium-0"]["restarts"] == 1

    # kill -9 the fork server: it is restarted and the running pools are untouched.
    pools = {name: _running(cluster, name) for name in ("queue-high-0", "queue-medium-0")}
    server = _running(cluster, "fork-server")
    os.kill(server, signal.SIGKILL)
    _running(cluster, "fork-server", not_pid=server)
    assert {name: _rows(cluster)[name]["pid"] for name in pools} == pools
    assert all(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pools.values())

    # A later restart of a pool is forked by the new fork server, and its jobs run.
    restarted = cluster.cli("queues", "restart", "high")
    assert restarted.returncode == 0, restarted.stderr
    fresh = _running(cluster, "queue-high-0", not_pid=pools["queue-high-0"])
    assert _forked_by_the_supervisor(cluster, fresh)
    done = client.enqueue("tests.queues.jobs.mark", "after", "ok")
    wait_for(lambda: r.hget(QueueKeys("high").job(done.id), "state") == "done", 60, 0.1, "a job on the new pool")
    assert not any(line.get("level") == "WARNING" and "fresh interpreter" in line.get("message", "")
                   for line in cluster.logs()), "no pool fell back to a spawn"


def test_a_forked_pool_shares_the_preloaded_pages_a_spawned_pool_holds_alone(
        cluster_factory: Callable[..., ClusterProcess],
        start_pool: Callable[[Settings, str], subprocess.Popen[bytes]]) -> None:
    cluster = cluster_factory("--jobs", "tests.queues.jobs", env=POOLS, workers=1, queues=True)
    settings = _settings(cluster)
    r = redis.Redis.from_url(settings.redis.url or "", decode_responses=True)
    forked = _running(cluster, "queue-high-0")
    spawned = start_pool(settings, "high")
    consumers = QueueKeys("high").consumers
    wait_for(lambda: r.zcard(consumers) == 2, 60, 0.2, "both consumers to beat")
    forked_shared, forked_private = _shared_and_private_kib(forked)
    spawned_shared, spawned_private = _shared_and_private_kib(spawned.pid)
    figures = json.dumps({"forked": [forked_shared, forked_private], "spawned": [spawned_shared, spawned_private]})
    # The preloaded interpreter, runtime and jobs module are shared with the fork server (and every other
    # forked pool); a spawned pool holds its own copy of them as private pages.
    assert forked_shared > spawned_shared, figures
    assert 2 * forked_private < spawned_private, figures


SILENT = [sys.executable, "-c", "import time; time.sleep(3600)"]
"""A process that never writes the fork server's ready line."""


async def _no_restart(child: SupervisedChild, pid: int | None, code: int | None) -> RestartDecision | None:
    """An owner that restarts nothing (these children are only stopped)."""
    return None


def _silent_server_and_pool() -> tuple[forked.ForkServerChild, forked.ForkedChild]:
    """A fork server that never gets ready, and a pool that asks it for its process; both started."""
    server = forked.make_fork_server(
        ChildSpec("fork-server", "fork-server", [*SILENT, "-1"], env=cli_env()), _no_restart)
    pool = forked.ForkedChild(
        ChildSpec("queue-high-0", "queue-high", [*SILENT, "cluster.queues.pool"], env=cli_env()), _no_restart,
        fork_server=server)
    server.start()
    pool.start()
    return server, pool


def test_a_pool_starts_the_spawned_way_when_no_fork_server_gets_ready(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(forked, "READY_WAIT", 1.0)

    async def main() -> bool:
        server, pool = _silent_server_and_pool()
        try:
            while pool.pid is None:
                await asyncio.sleep(0.05)
            return isinstance(pool.process, asyncio.subprocess.Process)
        finally:
            await asyncio.gather(pool.stop(), server.stop())

    assert run_async(main), "the pool was spawned (an asyncio subprocess), not forked"
    assert any("starting it as a fresh interpreter instead" in r.getMessage() for r in caplog.records)


def test_orphans_adopted_by_the_supervisor_are_reaped(cluster_factory: Callable[..., ClusterProcess]) -> None:
    """As the pools' subreaper, the supervisor also adopts the HTTP workers of a killed arbiter: no zombie stays."""
    cluster = cluster_factory("--jobs", "tests.queues.jobs", env=POOLS, workers=2, queues=True)
    assert cluster.proc is not None
    workers = cluster.worker_pids()
    arbiter = _running(cluster, "http")
    os.kill(arbiter, signal.SIGKILL)
    _running(cluster, "http", not_pid=arbiter)

    def zombies() -> list[int]:
        assert cluster.proc is not None
        return [p.pid for p in psutil.Process(cluster.proc.pid).children() if p.status() == psutil.STATUS_ZOMBIE]

    wait_for(lambda: not any(psutil.pid_exists(pid) for pid in workers), 60, 0.2,
             "the orphaned workers to exit and be reaped")
    assert zombies() == []


def test_a_pool_stopped_while_it_waits_for_the_fork_server_starts_nothing(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(forked, "READY_WAIT", 3600.0)

    async def main() -> None:
        server, pool = _silent_server_and_pool()
        try:
            while not server._asking.locked():  # the pool waits for the fork server's ready line
                await asyncio.sleep(0.05)
            # A hang guard, not a speed bound: without the wake-up the stop would wait READY_WAIT (an hour).
            stopping = asyncio.ensure_future(pool.stop())
            done, _ = await asyncio.wait({stopping}, timeout=120)
            assert stopping in done, "the pool's stop waited for the fork server"
            assert pool.process is None and pool.state == "stopped"
        finally:
            await server.stop()

    run_async(main)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a stop is not a failed start"
