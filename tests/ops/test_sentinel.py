"""Redis Sentinel: the queue clients find the master through the sentinels and follow a real failover.

redis-server x2 (master, replica) + one redis-sentinel; an enqueue loop runs while Sentinel fails
the master over to the replica; every acknowledged job must be on the new master.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import redis

from cluster.config import load
from cluster.queues.client import SyncQueueClient
from cluster.queues.connection import parse_sentinel_url
from cluster.queues.keys import QueueKeys
from tests.support import free_port, wait_for

MASTER = "mymaster"


def test_sentinel_url_round_trip() -> None:
    settings = load(env={"REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2:26379", "REDIS_SENTINEL_MASTER": MASTER},
                    use_default_files=False).settings
    assert settings.redis.url == f"redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/{MASTER}/0"
    assert parse_sentinel_url(settings.redis.url) == ([("10.0.0.1", 26379), ("10.0.0.2", 26379)], MASTER, 0, None)
    assert parse_sentinel_url("redis+sentinel://:pw@h:1/m/2") == ([("h", 1)], "m", 2, "pw")
    assert parse_sentinel_url("redis://h:1/0") is None


def _server(directory: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True)
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
         "--appendonly", "no", "--maxmemory-policy", "noeviction", *extra],
        stdout=(directory / "log").open("wb"), stderr=subprocess.STDOUT)


@pytest.mark.skipif(shutil.which("redis-sentinel") is None or shutil.which("redis-server") is None,
                    reason="redis-server and redis-sentinel are needed (scripts/install-system-deps)")
def test_no_acknowledged_job_is_lost_in_a_failover(tmp_path: Path) -> None:
    m_port, r_port, s_port = free_port(), free_port(), free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {s_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor {MASTER} 127.0.0.1 {m_port} 1\n"
                    f"sentinel down-after-milliseconds {MASTER} 2000\nsentinel failover-timeout {MASTER} 10000\n")
    procs = [_server(tmp_path / "m", m_port),
             _server(tmp_path / "r", r_port, "--replicaof", "127.0.0.1", str(m_port))]
    procs.append(subprocess.Popen(["redis-sentinel", str(conf)], stdout=(tmp_path / "sentinel.log").open("wb"),
                                  stderr=subprocess.STDOUT))
    sentinel = redis.Redis(port=s_port, decode_responses=True)
    acked: list[str] = []
    failed: list[str] = []
    stop = threading.Event()
    try:
        replica = redis.Redis(port=r_port, decode_responses=True)
        wait_for(lambda: replica.info("replication")["master_link_status"] == "up", 30, 0.1, "the replica")
        wait_for(lambda: sentinel.sentinel_master(MASTER)["num-slaves"] >= 1, 60, 0.2, "sentinel to see the replica")
        import tests.queues.jobs  # noqa: F401  (registers the job)

        # acknowledged = on a replica too (WAIT 1): what the failover cannot take away
        settings = load(env={"REDIS_SENTINELS": f"127.0.0.1:{s_port}", "REDIS_SENTINEL_MASTER": MASTER,
                             "CLUSTER_REDIS_WAIT_REPLICAS": "1"}, use_default_files=False).settings
        client = SyncQueueClient(settings)

        def enqueue_loop() -> None:
            i = 0
            while not stop.is_set():
                try:
                    acked.append(client.enqueue("tests.queues.jobs.add", i, 1).id)
                except Exception as exc:  # not acknowledged: the caller knows and may retry
                    failed.append(repr(exc))
                i += 1

        thread = threading.Thread(target=enqueue_loop, daemon=True)
        thread.start()
        wait_for(lambda: len(acked) >= 300, 60, 0.05, "jobs before the failover")
        sentinel.execute_command("SENTINEL", "FAILOVER", MASTER)
        wait_for(lambda: int(sentinel.sentinel_get_master_addr_by_name(MASTER)[1]) == r_port, 60, 0.1,
                 "the replica to be promoted")
        before = len(acked)
        wait_for(lambda: len(acked) >= before + 300, 60, 0.05, "jobs after the failover")
        stop.set()
        thread.join(30)
        client.close()
        new_master = redis.Redis(port=r_port, decode_responses=True)
        keys = QueueKeys("medium")
        lost = [job_id for job_id in acked if not new_master.exists(keys.job(job_id))]
        print(f"\nsentinel failover: {len(acked)} jobs acknowledged, {len(failed)} enqueues refused during the "
              f"failover, {len(lost)} acknowledged jobs lost")
        assert lost == []
    finally:
        stop.set()
        for proc in procs:
            proc.terminate()
            proc.wait(10)
