"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import ClusterProcess


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., ClusterProcess]]:
    """Start real clusters in temp state dirs; all of them are stopped at teardown."""
    started: list[ClusterProcess] = []

    def make(*args: str, env: dict[str, str] | None = None, workers: int = 2, wait_ready: bool = True,
             name: str = "state", queues: bool = False) -> ClusterProcess:
        proc = ClusterProcess(tmp_path / name, list(args), env=env, workers=workers, queues=queues)
        started.append(proc)
        return proc.start(wait_ready=wait_ready)

    yield make
    for proc in started:
        proc.close()
