"""Pool processes (``python -m queues.pool``) killed mid-job: the job still completes."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

import pytest
import redis

from cluster.config import Settings
from cluster.queues.client import SyncQueueClient
from cluster.queues.keys import QueueKeys
from tests.support import wait_for

pytestmark = pytest.mark.integration


def _job(client: redis.Redis, priority: str, job_id: str) -> dict[str, str]:
    return client.hgetall(QueueKeys(priority).job(job_id))


def test_kill_9_mid_job_and_the_job_still_completes(make_settings: Callable[..., Settings],
                                                      start_pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    settings = make_settings(low={"timeout": 3.0})
    r = redis.Redis.from_url(settings.redis.url or "", decode_responses=True)
    queued = SyncQueueClient(settings).enqueue("tests.queues.jobs.crash_once", "runs", "victim-pid")
    first = start_pool(settings, "low")
    pid = int(wait_for(lambda: r.get("victim-pid"), 30, what="the job to start"))
    assert pid == first.pid
    os.kill(pid, signal.SIGKILL)
    first.wait(10)
    start_pool(settings, "low")  # what the supervisor does: a fresh consumer; it claims the dead one's job
    job = wait_for(lambda: (j := _job(r, "low", queued.id)) and j.get("state") == "done" and j, 60,
                   what="the reclaimed job to complete")
    assert job["result"] == '"survived"' and job["attempts"] == "1", "a crash is not a failed attempt"
    assert r.lrange("runs", 0, -1) == ["1", "1"]


def test_sync_handler_ignoring_its_timeout_gets_its_process_killed_then_retried(
        make_settings: Callable[..., Settings], start_pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    settings = make_settings(medium={"timeout": 0.5})
    r = redis.Redis.from_url(settings.redis.url or "", decode_responses=True)
    queued = SyncQueueClient(settings).enqueue("tests.queues.jobs.stuck", "stuck-runs")
    first = start_pool(settings, "medium")
    assert first.wait(60) == -signal.SIGKILL
    assert _job(r, "medium", queued.id)["state"] == "retrying", "the timeout was recorded before the kill"
    start_pool(settings, "medium")
    wait_for(lambda: _job(r, "medium", queued.id).get("state") == "done", 60, what="the retry to complete")
    assert r.lrange("stuck-runs", 0, -1) == ["1", "2"]
