"""Shared fixtures."""

from __future__ import annotations

import os
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under CI (CI=true) a skip is a failure: a tool CI should have installed is missing, and a test
    that did not run must not pass for one that did."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {reason}"
