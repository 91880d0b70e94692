import pytest

from cluster.config.urls import bind_url
from cluster.workers.endpoints import PROBE_PATH
from cluster.arbiter.http_tier import worker_class


@pytest.mark.parametrize(("event_loop", "expected"), [
    ("auto", "cluster.workers.gunicorn_worker.UVLoopWorker"),  # uvloop is a dependency, so it is installed
    ("uvloop", "cluster.workers.gunicorn_worker.UVLoopWorker"),
    ("asyncio", "cluster.workers.gunicorn_worker.AsyncioWorker"),
])
def test_event_loop_picks_aiohttps_worker(event_loop: str, expected: str) -> None:
    assert worker_class(event_loop) == expected


@pytest.mark.parametrize(("bind", "expected"), [
    ("127.0.0.1:8000", ("http://127.0.0.1:8000/_cluster/health", None)),
    ("0.0.0.0:80", ("http://127.0.0.1:80/_cluster/health", None)),
    ("[::]:8080", ("http://[::1]:8080/_cluster/health", None)),
    ("unix:/run/app.sock", ("http://localhost/_cluster/health", "/run/app.sock")),
])
def test_health_probe_targets_a_bound_address(bind: str, expected: tuple) -> None:
    assert bind_url(bind, PROBE_PATH) == expected
