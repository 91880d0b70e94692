"""Two `cluster start` hosts on one machine behind a real HAProxy (deploy/haproxy/cluster.cfg),
both consumers of one shared Redis.

- a client loop through the proxy while one host is stopped and started again: 0 failed requests;
- a few thousand jobs, one host killed with -9 midway: every job runs, exactly once except those
  the killed host held (reclaimed and run again by the other host, counted).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from cluster.config import load
from cluster.queues.client import SyncQueueClient
from cluster.queues.keys import GROUP, QueueKeys
from tests.redis_fixture import RedisServer
from tests.support import ClusterProcess, RequestLoop, free_port, http_get, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
JOBS = 2000
ROOT_ONLY = ("chroot ", "user ", "group ", "daemon", "stats socket", "log /dev/log")


def haproxy_config(port: int, backends: list[int]) -> str:
    """deploy/haproxy/cluster.cfg with this test's ports, minus what needs root."""
    lines = []
    servers = iter(backends)
    for line in (DEPLOY / "haproxy" / "cluster.cfg").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(ROOT_ONLY):
            continue
        if stripped.startswith("bind :"):
            line = f"    bind 127.0.0.1:{port}"
        elif stripped.startswith("maxconn "):
            line = "    maxconn 1000"  # the test's fd limit
        elif stripped.startswith("server "):
            name = stripped.split()[1]
            line = f"    server {name} 127.0.0.1:{next(servers)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _restart(host: ClusterProcess) -> None:
    """`cluster stop` (graceful), then `cluster start` again on the same port and state dir."""
    assert host.cli("stop", "--timeout", "120").returncode == 0
    host.proc.wait(60)
    host._log.close()
    host.start()


def _signal_tree(host: ClusterProcess, sig: int) -> None:
    procs = [psutil.Process(pid) for pid in host.tree_pids() if psutil.pid_exists(pid)]
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def _kill_tree(host: ClusterProcess) -> None:
    _signal_tree(host, signal.SIGKILL)
    host.proc.wait(30)


@pytest.mark.skipif(shutil.which("haproxy") is None or shutil.which("redis-server") is None,
                    reason="haproxy and redis-server are needed (scripts/install-system-deps)")
def test_two_hosts_behind_haproxy(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    env = {"REDIS_URL": redis_server.url, "QUEUE_HIGH_WORKERS": "2", "QUEUE_MEDIUM_WORKERS": "0",
           "QUEUE_LOW_WORKERS": "0", "QUEUE_BACKGROUND_WORKERS": "0"}
    hosts = [ClusterProcess(tmp_path / name, ["--jobs", "tests.ops.jobs"], env={**env, "OPS_HOST": name},
                            workers=2, queues=True) for name in ("a", "b")]
    proxy_port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config(proxy_port, [h.port for h in hosts]))
    proxy: subprocess.Popen[bytes] | None = None
    try:
        for host in hosts:
            host.start()
        proxy = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=(tmp_path / "haproxy.log").open("wb"),
                                 stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{proxy_port}/ping"
        wait_for(lambda: proxy.poll() is None and http_get(url, timeout=5)[0] == 200, 60, 0.2, "the proxy to serve")

        # 1. a host stopped and started again under load
        with RequestLoop(url, threads=2) as load:
            wait_for(lambda: load.ok >= 50, 60, 0.05, "requests before the stop")
            _restart(hosts[0])
            before = load.ok
            wait_for(lambda: load.ok >= before + 200, 120, 0.1, "requests after the restart")
        print(f"\ntwo hosts, one restarted under load: {load.ok} requests ok, {len(load.failures)} failed "
              f"through the proxy {load.failures[:3]}")
        assert load.failures == []

        # 2. jobs on both hosts; host b killed with -9 midway
        settings = load_settings(redis_server.url)
        client = SyncQueueClient(settings)
        r = redis_server.client()
        try:
            for i in range(JOBS):
                client.enqueue("tests.ops.jobs.tally", str(i), 0.2)
        finally:
            client.close()
        wait_for(lambda: r.hlen("ops:done:b") >= 200, 120, 0.05, "host b to run jobs")
        b_pools = {row["pid"] for row in hosts[1].status()["processes"] if row["group"].startswith("queue-")}
        # Count what b holds while it is stopped: it can neither ack nor read, and its consumers are still
        # alive, so host a (the same machine, hence "same host" to the reclaim by name) takes nothing yet.
        _signal_tree(hosts[1], signal.SIGSTOP)
        held = sum(c["pending"] for c in r.xpending(QueueKeys("high").stream, GROUP)["consumers"]
                   if int(c["name"].rsplit("-", 1)[1]) in b_pools)
        _kill_tree(hosts[1])
        killed_at = r.hgetall("ops:done:b")
        done = wait_for(lambda: (lambda d: d if len(d) == JOBS else None)(_completions(r)), 180, 0.5,
                        "every job to complete")
        starts = {k: int(v) for k, v in r.hgetall("ops:starts").items()}
        started_on_b = r.smembers("ops:started:b")
        once = sum(1 for t in done if done[t] == 1 and starts.get(t) == 1)
        rerun = sorted((t for t in done if starts.get(t, 0) > 1), key=int)
        twice_done = [t for t in done if done[t] > 1]
        print(f"jobs: {JOBS} enqueued, {once} ran exactly once, {len(rerun)} ran again after host b was killed "
              f"(b held {held}, had completed {len(killed_at)}), {len(twice_done)} completed twice, "
              f"{JOBS - len(done)} lost")
        assert len(done) == JOBS, "no job lost"
        assert set(rerun) <= started_on_b, "only jobs the killed host held ran again"
        assert len(rerun) <= held
        assert set(twice_done) <= set(rerun)
        assert once + len(rerun) == JOBS
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(30)
        for host in hosts:
            host.close()
        redis_server.stop()


def load_settings(redis_url: str):  # type: ignore[no-untyped-def]
    import tests.ops.jobs  # noqa: F401  (registers the job the client enqueues)

    return load(env={"REDIS_URL": redis_url}, use_default_files=False).settings


def _completions(r) -> dict[str, int]:  # type: ignore[no-untyped-def]
    done: dict[str, int] = {}
    for host in ("a", "b"):
        for token, count in r.hgetall(f"ops:done:{host}").items():
            done[token] = done.get(token, 0) + int(count)
    return done
