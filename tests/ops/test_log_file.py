"""--log-file survives logrotate: after the file is moved and SIGUSR1 sent to the supervisor,
every process of the tree (supervisor, arbiter, HTTP workers, queue pools, fork server) writes to a new file."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.support import ClusterProcess, wait_for


def _holders(pids: set[int], path: Path) -> set[int]:
    """The pids that have ``path`` open."""
    holders = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    holders.add(pid)
            except OSError:
                continue
    return holders


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_every_process_reopens_the_log_file_on_sigusr1(tmp_path: Path) -> None:
    log_file = tmp_path / "cluster.log"
    env = {"QUEUE_HIGH_WORKERS": "1", "QUEUE_MEDIUM_WORKERS": "0", "QUEUE_LOW_WORKERS": "0",
           "QUEUE_BACKGROUND_WORKERS": "0"}
    c = ClusterProcess(tmp_path / "state", ["--log-file", str(log_file), "--jobs", "tests.queues.jobs"], env=env,
                       workers=2, queues=True)
    try:
        c.start()
        status = c.status()
        # the tree minus redis-server, which logs to our stdout
        pids = {status["supervisor"]["pid"]} | {row["pid"] for row in status["processes"]
                                               if row["pid"] and row["group"] != "redis"}
        # supervisor, arbiter, 2 workers, 1 queue pool and the fork server it was forked from
        assert len(pids) == 6, status["processes"]
        wait_for(lambda: _holders(pids, log_file) == pids, 30, 0.1, "every process to log to the file")
        first = [json.loads(line) for line in log_file.read_text().splitlines()]
        assert {"supervisor", "http-arbiter", "queue-high"} <= {line["role"] for line in first}

        rotated = tmp_path / "cluster.log.1"
        log_file.rename(rotated)  # what logrotate does
        os.kill(c.proc.pid, signal.SIGUSR1)
        wait_for(lambda: _holders(pids, log_file) == pids and not _holders(pids, rotated), 60, 0.1,
                 "every process to reopen the file")
        reopened = [json.loads(line) for line in log_file.read_text().splitlines()]
        assert any(line["message"] == "log files reopened" for line in reopened)
    finally:
        c.close()
