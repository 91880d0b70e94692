"""Pure pieces of the lifecycle: job bounds, one-line failures, preflight checks, shadowed built-ins."""

from __future__ import annotations

import asyncio
import math
import os
import socket
from pathlib import Path

import pytest
from aiohttp import web

from cluster.supervisor import preflight
from cluster.supervisor.first_boot import failure_message
from cluster.config import ConfigError, Settings, load
from cluster.queues import job_limits
from cluster.workers.app import build_app, failure_line, shadowed_builtins


@pytest.mark.parametrize("kwargs", [{"self": 1}, {"name": "x"}, {"job_id": "y"}, {"at": 1}])
def test_reserved_kwarg_names_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="may not use the names"):
        job_limits.encode_arguments([], kwargs, 65536)


def test_nesting_is_bounded_without_recursion() -> None:
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert job_limits.nesting_depth(deep) > job_limits.MAX_DEPTH
    with pytest.raises(ValueError, match="nests deeper"):
        job_limits.encode_arguments([deep], {}, 10**9)
    job_limits.encode_arguments([[[1]]], {"a": {"b": [1]}}, 65536)


def test_payload_size_and_json_ness() -> None:
    with pytest.raises(ValueError, match="max_payload_bytes"):
        job_limits.encode_arguments(["x" * 100], {}, 50)
    with pytest.raises(ValueError, match="must be JSON"):
        job_limits.encode_arguments([object()], {}, 65536)
    with pytest.raises(ValueError, match="must be JSON"):
        job_limits.encode_arguments([math.nan], {}, 65536)


@pytest.mark.parametrize("delay", [1e300, math.inf, math.nan, -1.0, 8 * 86400.0])
def test_delays_must_be_finite_and_bounded(delay: float) -> None:
    with pytest.raises(ValueError):
        job_limits.check_schedule(delay, None, 1000.0, 7 * 86400.0)


def test_at_is_bounded_like_delay() -> None:
    job_limits.check_schedule(None, 1000.0 + 60, 1000.0, 7 * 86400.0)
    with pytest.raises(ValueError, match="max_delay"):
        job_limits.check_schedule(None, 1000.0 + 8 * 86400, 1000.0, 7 * 86400.0)


def test_inf_and_nan_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("inf", "nan", "-inf"):
        monkeypatch.setenv("CLUSTER_HEALTH_INTERVAL", value)
        with pytest.raises(ConfigError, match="health.interval"):
            load()


def test_a_redis_port_out_of_range_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:99999/0")
    with pytest.raises(ConfigError, match="redis.url"):
        load()


def test_a_failure_line_names_the_root_cause_and_where() -> None:
    def inner() -> None:
        raise KeyError("DATABASE_URL")

    try:
        try:
            inner()
        except KeyError as exc:
            raise RuntimeError("app failed") from exc
    except RuntimeError as exc:
        line = failure_line(exc)
    assert line.startswith("app failed: KeyError: 'DATABASE_URL'") and "test_lifecycle_checks.py:" in line
    assert "\n" not in line
    assert "worker failed to boot" in failure_message(3, "x") and failure_message(1, None).endswith("log above for the cause")


def test_bind_checks() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        problem = preflight.tcp_bind_problem("server.bind", f"127.0.0.1:{port}") or ""
        # the holder is named, as `ss -ltnp` would: here it is this very process
        assert "cannot bind" in problem and problem.endswith(f"(pid {os.getpid()}) listens on port {port})"), problem
        # Held by the previous tree of this state dir (here, as if this process were it): the start waits.
        address = f"127.0.0.1:{port}"
        assert preflight.tcp_bind_problem("server.bind", address, frozenset({os.getpid()})) is None
        assert preflight.tcp_bind_problem("server.bind", address, frozenset({os.getpid() + 1})) == problem
        assert preflight.in_use([("server.bind", address), ("metrics.bind", "127.0.0.1:0")]) == {
            address: frozenset({os.getpid()})}
    assert preflight.tcp_bind_problem("server.bind", "127.0.0.1:0") is None
    assert "cannot resolve" in (preflight.tcp_bind_problem("metrics.bind", "no-such-host.invalid:1") or "")
    assert "not HOST:PORT" in (preflight.tcp_bind_problem("metrics.bind", "garbage") or "")
    assert "AF_UNIX" in (preflight.unix_bind_problem("server.bind", "/tmp/" + "x" * 120) or "")


def test_state_dir_checks(tmp_path: Path) -> None:
    assert preflight.state_dir_problems(tmp_path / "ok") == []
    assert (tmp_path / "ok").is_dir() and list((tmp_path / "ok").iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "not usable" in preflight.state_dir_problems(blocker / "state")[0]
    assert "unix socket allows" in preflight.socket_path_problems(tmp_path / ("d" * 120))[0]
    assert preflight.socket_path_problems(tmp_path / "ok") == []


def test_the_settings_round_trip() -> None:
    assert preflight.round_trip_problems(Settings()) == []


async def _own_routes_app() -> web.Application:
    async def mine(request: web.Request) -> web.Response:
        return web.Response(text="mine")

    app = web.Application()
    app.router.add_get("/health", mine)
    app.router.add_post("/api/enterprise/jobs", mine)
    app.router.add_get("/ping", mine)
    return app


def test_user_routes_win_and_shadowed_builtins_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.unit.test_lifecycle_checks as here

    monkeypatch.setattr(here, "user_app", _own_routes_app, raising=False)
    settings = Settings.model_validate({"server": {"app": "tests.unit.test_lifecycle_checks:user_app()",
                                                   "max_body_size": 1234},
                                        "redis": {"embedded": False}})
    app = asyncio.run(build_app(settings))
    assert app._client_max_size == 1234
    shadowed = asyncio.run(shadowed_builtins(app, 3))
    assert shadowed == ["GET /ping", "GET /health", "POST /api/enterprise/jobs"]


def test_only_an_exit_of_its_own_fails_the_first_boot() -> None:
    from cluster.supervisor.first_boot import failed

    assert failed(3) and failed(1)
    assert not failed(None) and not failed(0) and not failed(-1) and not failed(-9)


def test_an_app_spec_error_is_its_own_message() -> None:
    from cluster.workers.app import AppLoadError

    assert failure_line(AppLoadError("app 'm:a' gave dict, not an aiohttp.web.Application")) == \
        "app 'm:a' gave dict, not an aiohttp.web.Application"


def test_with_socket_activation_server_bind_is_systemds_to_bind() -> None:
    settings = Settings.model_validate({"server": {"bind": ["127.0.0.1:8000", "unix:/tmp/c.sock"]},
                                        "metrics": {"bind": "127.0.0.1:9100"}})
    assert preflight.tcp_binds(settings, socket_activated=False) == [("server.bind", "127.0.0.1:8000"),
                                                                     ("metrics.bind", "127.0.0.1:9100")]
    assert preflight.tcp_binds(settings, socket_activated=True) == [("metrics.bind", "127.0.0.1:9100")]
