"""Fixtures of the queue tests: a real redis-server and settings pointing at it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.config import Settings
from tests.redis_fixture import redis_server, redis_url  # noqa: F401  (fixtures)
from tests.queues import jobs  # noqa: F401  (registers the test jobs)
from tests.support import cli_env


@pytest.fixture
def make_settings(redis_url: str) -> Callable[..., Settings]:
    """Settings on the test Redis with short timeouts; ``queues`` entries override per test."""

    def make(**queues: Any) -> Settings:
        base: dict[str, Any] = {
            "kill_grace": 0.5, "backoff_base": 0.05, "backoff_max": 0.2, "jobs_module": "tests.queues.jobs",
        }
        for priority in ("high", "medium", "low", "background"):
            base[priority] = {"workers": 1, "timeout": 1.0, "concurrency": 4, "retries": 2, "max_size": 1000}
        for key, value in queues.items():
            if isinstance(value, dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return Settings.model_validate({"redis": {"url": redis_url}, "queues": base})

    return make


@pytest.fixture
def start_pool(tmp_path: Path) -> Iterator[Callable[[Settings, str], subprocess.Popen[bytes]]]:
    """Start real pool processes (``python -m queues.pool``), as the supervisor does; killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings, priority: str) -> subprocess.Popen[bytes]:
        path = tmp_path / "settings.json"
        path.write_text(settings.model_dump_json())
        log = (tmp_path / f"pool-{len(procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "cluster.queues.pool", str(path), priority],
                                env=cli_env(), stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
