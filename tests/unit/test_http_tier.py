from pathlib import Path

import pytest

from cluster.config.urls import bind_url
from cluster.workers.endpoints import PROBE_PATH
from cluster.arbiter.http_tier import read_target, worker_class, write_target


@pytest.mark.parametrize(("event_loop", "expected"), [
    ("auto", "cluster.workers.gunicorn_worker.UVLoopWorker"),  # uvloop is a dependency, so it is installed
    ("uvloop", "cluster.workers.gunicorn_worker.UVLoopWorker"),
    ("asyncio", "cluster.workers.gunicorn_worker.AsyncioWorker"),
])
def test_event_loop_picks_aiohttps_worker(event_loop: str, expected: str) -> None:
    assert worker_class(event_loop) == expected


def test_target_file_round_trip_and_bad_contents(tmp_path: Path) -> None:
    assert read_target(tmp_path / "http.target") is None
    write_target(tmp_path, 5)
    assert read_target(tmp_path / "http.target") == 5
    (tmp_path / "http.target").write_text("zero\n")
    assert read_target(tmp_path / "http.target") is None
    (tmp_path / "http.target").write_text("0\n")
    assert read_target(tmp_path / "http.target") is None


@pytest.mark.parametrize(("bind", "expected"), [
    ("127.0.0.1:8000", ("http://127.0.0.1:8000/_cluster/health", None)),
    ("0.0.0.0:80", ("http://127.0.0.1:80/_cluster/health", None)),
    ("[::]:8080", ("http://[::1]:8080/_cluster/health", None)),
    ("unix:/run/app.sock", ("http://localhost/_cluster/health", "/run/app.sock")),
])
def test_health_probe_targets_a_bound_address(bind: str, expected: tuple) -> None:
    assert bind_url(bind, PROBE_PATH) == expected
