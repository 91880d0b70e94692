"""A replica frozen with SIGSTOP under read load: reads time out on it, fail over, and its
breaker ejects it, and no read fails. How fast the reads go is measured by a benchmark, not here."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import psutil
import pytest

from cluster.observability.context import read_your_writes_var
from tests.pg_fixture import PgCluster
from cluster.db import router_from_settings
from tests.support import run_async

pytestmark = pytest.mark.integration
READ_TIMEOUT = 1.0
CONCURRENCY = 8
PHASE = 4.0


def node_processes(cluster: PgCluster, name: str) -> list[psutil.Process]:
    """The postmaster of a node and every process under it."""
    pid = int((cluster.dir / name / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children(recursive=True)]


def freeze(processes: list[psutil.Process], sig: signal.Signals) -> None:
    for proc in processes:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


def test_a_frozen_replica_under_read_load_is_ejected_and_reads_keep_flowing(pg_cluster: PgCluster) -> None:
    victim = pg_cluster.host("replica2")
    settings = pg_cluster.settings(read_timeout=READ_TIMEOUT, checkout_wait=0.05, health_check_interval=1.0,
                                   pool_size=4, strategy="round_robin")

    async def main() -> dict[str, Any]:
        router = router_from_settings(settings)
        assert router is not None
        await router.start()
        phase = {"name": "before"}
        reads: dict[str, list[float]] = {"before": [], "frozen": []}
        errors: list[str] = []
        stop = asyncio.Event()

        async def reader() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                name = phase["name"]
                try:
                    async with router.read() as conn:
                        await conn.fetchone("SELECT inet_server_port()")
                except Exception as exc:  # counted: the test asserts there are none
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if name in reads and phase["name"] == name:
                    reads[name].append(time.perf_counter() - started)

        tasks = [asyncio.create_task(reader()) for _ in range(CONCURRENCY)]
        processes: list[psutil.Process] = []
        try:
            await asyncio.sleep(PHASE)
            processes = node_processes(pg_cluster, "replica2")  # now: with the backends the load made
            freeze(processes, signal.SIGSTOP)
            phase["name"] = "frozen"
            await asyncio.sleep(PHASE)
            phase["name"] = "after"
            breaker = router.by_name[victim].breaker.status()
        finally:
            freeze(processes, signal.SIGCONT)
            stop.set()
            await asyncio.gather(*tasks)
            await router.close()
        return {"reads": reads, "errors": errors, "breaker": breaker}

    read_your_writes_var.set(None)
    try:
        result = run_async(main)
    finally:
        freeze(node_processes(pg_cluster, "replica2"), signal.SIGCONT)
        pg_cluster.restore()
    reads = result["reads"]
    assert result["errors"] == []
    assert result["breaker"]["openings"] >= 1, result["breaker"]  # ejected, not merely timed out on
    # Speed is the benchmark's business (scripts/bench/replicas); here: reads went on during the freeze.
    slowest = max(reads["frozen"])
    rate_before, rate_frozen = len(reads["before"]) / PHASE, len(reads["frozen"]) / PHASE
    print(f"reads/s before {rate_before:.0f}, frozen {rate_frozen:.0f}; slowest read while frozen {slowest:.2f} s")
    assert len(reads["frozen"]) > CONCURRENCY, "the readers kept reading while the replica was frozen"
