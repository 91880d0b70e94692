"""Security on a real cluster: admin routes, the state dir, secrets in logs, a full Redis.

The admin routes are listed from the application's router, so a route added
later is checked without anyone remembering to add it here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from cluster.config import Settings
from tests.alert_receivers import HttpReceiver
from tests.redis_fixture import RedisServer
from tests.support import ClusterProcess, free_port, http_get, run_cli, wait_for
from cluster.workers.admin_guard import is_admin_path
from cluster.workers.app import build_app

pytestmark = pytest.mark.integration
TOKEN = "adm-" + "7f3c9e1d5b2a4c6e8f0a1b3d5e7f9a2c"
# /_cluster/health: the supervisor's probe (status only unless admin, as /health); /alerts/ack/{id}: a signed
# one-time acknowledge link, whose HMAC signature is its authorization.
PUBLIC = ("/ping", "/livez", "/readyz", "/health", "/_cluster/health", "/alerts/ack/x")
# The queue tier with one pool process: the job routes answer, and the two cores stay free.
ONE_POOL = {
    "CLUSTER_QUEUES_JOBS_MODULE": "tests.queues.jobs",
    "CLUSTER_QUEUES_MEDIUM_WORKERS": "0", "CLUSTER_QUEUES_LOW_WORKERS": "0",
    "CLUSTER_QUEUES_BACKGROUND_WORKERS": "0", "CLUSTER_QUEUES_HIGH_WORKERS": "1",
}


def builtin_routes() -> list[tuple[str, str]]:
    """(method, path) of every built-in route of the workers' app, placeholders filled in."""
    app = asyncio.run(build_app(Settings()))
    routes = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or ""
        for route in resource:
            if route.method not in ("HEAD", "*"):
                routes.add((route.method, re.sub(r"\{[^}]+\}", "x", path)))
    return sorted(routes, key=lambda r: (r[1], r[0]))


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    if method != "GET" and body is None:
        body = b"{}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def outside() -> str:
    """An address of this host that is not loopback: a client connecting to it is not local."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    pytest.skip("this host has no non-loopback address to play a remote client from")


def test_every_admin_route_refuses_strangers_and_proxies_and_serves_the_token(
        cluster_factory: Callable[..., ClusterProcess], outside: str) -> None:
    remote_port = free_port()
    cluster = cluster_factory("--bind", f"{outside}:{remote_port}", env={"CLUSTER_ADMIN_TOKEN": TOKEN, **ONE_POOL},
                              queues=True)
    remote, local = f"http://{outside}:{remote_port}", cluster.url
    json_type = {"Content-Type": "application/json"}
    bearer = {"Authorization": f"Bearer {TOKEN}", **json_type}
    routes = builtin_routes()
    admin = [(m, p) for m, p in routes if is_admin_path(p)]
    assert {p for _, p in routes} - {p for _, p in admin} == set(PUBLIC), "a built-in route is neither public nor admin"
    assert len(admin) >= 8

    table = []
    for method, path in admin:
        stranger = request(remote + path, method, json_type)
        forwarded = {h: request(local + path, method, {h: v, **json_type})[0]
                     for h, v in (("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=203.0.113.9"),
                                  ("X-Real-IP", "203.0.113.9"))}
        wrong = request(remote + path, method, {"Authorization": "Bearer wrong", **json_type})
        allowed = request(remote + path, method, bearer)
        table.append((method, path, stranger[0], forwarded["X-Forwarded-For"], allowed[0]))
        assert stranger[0] == 401 and json.loads(stranger[2])["status"] == 401, (method, path, stranger)
        assert stranger[1].get("WWW-Authenticate", "").startswith("Bearer")
        assert set(forwarded.values()) == {401}, (method, path, forwarded)
        assert wrong[0] == 403, (method, path, wrong)
        assert allowed[0] not in (401, 403, 415), (method, path, allowed)
        if method != "GET":
            as_form = request(remote + path, method, {"Authorization": f"Bearer {TOKEN}",
                                                       "Content-Type": "text/plain"})
            assert as_form[0] == 415, (method, path, as_form)
            cross_site = request(remote + path, method, {**bearer, "Origin": "https://evil.example"})
            assert cross_site[0] == 403, (method, path, cross_site)
            same_site = request(remote + path, method, {**bearer, "Origin": remote})
            assert same_site[0] not in (401, 403, 415), (method, path, same_site)
    print("\nmethod path | unauthenticated (remote) | forwarded (loopback + X-Forwarded-For) | bearer token")
    for row in table:
        print(" | ".join(str(x) for x in row))

    for path in PUBLIC:
        # Open to a stranger: answered on its merits (an unsigned ack link is a 400), never refused as admin.
        assert request(remote + path)[0] not in (401, 403), path
    trimmed = json.loads(request(remote + "/health")[2])
    assert set(trimmed) == {"status"}
    assert "checks" in json.loads(request(local + "/health")[2])
    assert "checks" in json.loads(request(remote + "/health", headers=bearer)[2])

    # The supervisor's metrics listener answers the same way.
    assert request(cluster.metrics_url, headers={"X-Forwarded-For": "203.0.113.9"})[0] == 401
    assert request(cluster.metrics_url, headers={"Authorization": "Bearer wrong"})[0] == 403
    assert request(cluster.metrics_url, headers={"X-Forwarded-For": "203.0.113.9", **bearer})[0] == 200
    assert request(cluster.metrics_url)[0] == 200


def test_binding_off_loopback_without_a_token_warns_and_refuses_remote_admins(
        cluster_factory: Callable[..., ClusterProcess], outside: str) -> None:
    remote_port = free_port()
    cluster = cluster_factory("--bind", f"{outside}:{remote_port}")
    status, _, body = request(f"http://{outside}:{remote_port}/api/enterprise/cluster/status")
    assert status == 403 and "CLUSTER_ADMIN_TOKEN" in json.loads(body)["error"]
    warnings = [line for line in cluster.logs() if line.get("logger") == "cluster.security"]
    assert warnings and warnings[0]["level"] == "WARNING" and f"{outside}:{remote_port}" in warnings[0]["message"]


# -- the state dir -------------------------------------------------------------


def start_fails(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("start", "--bind", f"127.0.0.1:{free_port()}", "--state-dir", str(state_dir), "--workers", "1",
                   env={"CLUSTER_REDIS_EMBEDDED": "false", "CLUSTER_METRICS_BIND": ""}, timeout=60)


def test_a_state_dir_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    result = start_fails(shared)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "writable by group or others" in line and "chmod go-w" in line
    assert not (shared / "settings.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a dir owned by another user needs root")
def test_a_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    result = start_fails(theirs)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "owned by uid 65534" in line
    assert not (theirs / "settings.json").exists()


def test_a_state_dir_too_long_for_a_unix_socket_is_refused_not_put_on_tcp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * (110 - len(str(tmp_path))))
    result = start_fails(deep)
    assert result.returncode == 2
    assert "a unix socket allows" in result.stderr


def test_symlinks_planted_in_the_state_dir_are_replaced_never_followed(
        cluster_factory: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.chmod(victim, 0o600)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    planted = ("settings.json", "settings.tmp", "http.target", "http.tmp", "redis.conf")
    for name in planted:
        (state / name).symlink_to(victim)
    cluster = cluster_factory(name="state")
    assert cluster.status()["supervisor"]["ready"]
    assert victim.read_text() == "precious\n"
    for name in ("settings.json", "http.target"):
        st = os.lstat(state / name)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert cluster.cli("scale", "2").returncode == 0  # rewrites http.target again
    assert victim.read_text() == "precious\n"


def test_scale_beyond_the_worker_bound_is_refused(cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory(workers=1)
    result = cluster.cli("scale", "--max", "1000000")
    assert result.returncode != 0 and "bound" in result.stderr
    assert cluster.status()["workers"]["max"] == 1


# -- secrets ---------------------------------------------------------------------


def test_planted_secrets_never_reach_a_log_line_an_error_or_a_status(
        cluster_factory: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    secrets = {
        "redis password": "RedisPw0d9c8b7a6f5e4d3c",
        "smtp password": "SmtpPw1a2b3c4d5e6f7a8b",
        "telegram token": "987654321:TgTok-AAEhBP0av28aZ9fwx",
        "webhook header": "HookHdr5f4e3d2c1b0a9f8e",
        "webhook cookie": "session=HookCookie77aa88bb",
        "webhook query password": "HookQueryPw3344ccdd",
        "admin token": TOKEN,
    }
    redis = RedisServer(tmp_path / "redis").start()
    redis.client().config_set("requirepass", secrets["redis password"])
    webhook = HttpReceiver(reject_first=10_000).start()
    telegram = HttpReceiver(reject_first=10_000).start()
    env = {
        "REDIS_URL": f"redis://:{secrets['redis password']}@127.0.0.1:{redis.port}/0",
        "CLUSTER_ADMIN_TOKEN": secrets["admin token"],
        **ONE_POOL,
        # Memory above 0.1 % always: alerts fire at once, and every channel fails.
        "CLUSTER_MONITORING_MEMORY_WARNING": "0", "CLUSTER_MONITORING_MEMORY_CRITICAL": "0.1",
        "CLUSTER_MONITORING_METRICS_INTERVAL": "0.5",
        "CLUSTER_ALERTS_WEBHOOK_URL": f"{webhook.url}/hook?password={secrets['webhook query password']}",
        "CLUSTER_ALERTS_WEBHOOK_HEADERS": json.dumps({"X-Api-Key": secrets["webhook header"],
                                                      "Cookie": secrets["webhook cookie"],
                                                      "Content-Type": "application/json"}),
        "CLUSTER_ALERTS_TELEGRAM_BOT_TOKEN": secrets["telegram token"],
        "CLUSTER_ALERTS_TELEGRAM_CHAT_ID": "-1001",
        "CLUSTER_ALERTS_TELEGRAM_API_BASE": telegram.url,
        "CLUSTER_ALERTS_SMTP_HOST": "127.0.0.1",
        "CLUSTER_ALERTS_SMTP_PORT": str(free_port()),
        "CLUSTER_ALERTS_SMTP_USERNAME": "alerts",
        "CLUSTER_ALERTS_SMTP_PASSWORD": secrets["smtp password"],
        "CLUSTER_ALERTS_EMAIL_FROM": "cluster@example.test",
        "CLUSTER_ALERTS_EMAIL_TO": "oncall@example.test",
    }
    shown: list[str] = []
    try:
        cluster = cluster_factory(env=env, queues=True, workers=1)
        local_json = {"Content-Type": "application/json"}
        status, _, body = request(cluster.url + "/api/enterprise/jobs", "POST", local_json,
                                  json.dumps({"name": "tests.queues.jobs.mark", "args": ["sec-test", "v"]}).encode())
        assert status in (200, 202), body
        failures = ("alert channel webhook failed", "alert channel telegram failed", "alert channel email failed")
        wait_for(lambda: all(any(f in line.get("message", "") for line in cluster.logs()) for f in failures),
                 120, 0.5, "every alert channel to fail and say so")
        assert webhook.requests and telegram.requests
        shown.append(request(cluster.url + "/api/enterprise/cluster/status")[2].decode())
        shown.append(request(cluster.url + "/health")[2].decode())
        redis.stop()  # the pools and the workers now say Redis is unreachable, with its URL
        wait_for(lambda: json.loads(request(cluster.url + "/health")[2])["checks"]["queues"][0]["status"] == "warn",
                 60, 0.5, "/health to see Redis gone")
        shown.append(request(cluster.url + "/health")[2].decode())
        shown.append(request(cluster.url + "/api/enterprise/queues/status")[2].decode())
        shown.append(cluster.cli("status", "--json").stdout)
        shown.append(run_cli("config", "show", env=env).stdout)
        bad = {**env, "REDIS_URL": f"http://u:{secrets['redis password']}@h:6379",
               "CLUSTER_ALERTS_SMTP_PORT": "not-a-port"}
        config_error = run_cli("config", "show", env=bad)
        assert config_error.returncode == 2 and "redis.url" in config_error.stderr
        shown.append(config_error.stderr)
    finally:
        webhook.stop()
        telegram.stop()
        redis.stop()
    cluster.close()
    log_lines = cluster.log_path.read_text(errors="replace").splitlines()
    assert len(log_lines) > 30  # enough material: startup, every channel failing, Redis gone
    found = {name: [line for line in log_lines + shown if value in line] for name, value in secrets.items()}
    print(f"\nsecrets grep over {len(log_lines)} log lines and {len(shown)} outputs: "
          + ", ".join(f"{name}: {len(lines)}" for name, lines in found.items()))
    assert not any(found.values()), {name: lines[:3] for name, lines in found.items() if lines}
    # The secrets were there to mask: `config show` prints the webhook URL and headers with their values masked.
    assert any("****" in out for out in shown), "config show should print the planted secrets masked"


# -- a full Redis ----------------------------------------------------------------


def test_a_full_redis_answers_enqueues_with_503_and_the_operator_can_purge_delayed_jobs(
        cluster_factory: Callable[..., ClusterProcess]) -> None:
    env = {
        "CLUSTER_REDIS_MAXMEMORY_MB": "3",
        **ONE_POOL,
    }
    cluster = cluster_factory(env=env, queues=True, workers=1)
    payload = "x" * 50_000
    statuses: dict[int, int] = {}
    full: tuple[int, dict[str, str], bytes] | None = None
    for n in range(300):
        answer = request(cluster.url + "/api/enterprise/jobs", "POST", {"Content-Type": "application/json"},
                         json.dumps({"name": "tests.queues.jobs.mark", "args": [payload, str(n)], "priority": "low",
                                     "delay": 3600}).encode())
        statuses[answer[0]] = statuses.get(answer[0], 0) + 1
        if answer[0] == 503:
            full = answer
            break
    assert 500 not in statuses, statuses
    assert full is not None, f"Redis never filled up: {statuses}"
    assert statuses.get(202, 0) > 0
    assert int(full[1]["Retry-After"]) > 0
    assert "full" in json.loads(full[2])["error"]

    # The operator sees the delayed jobs that fill it, purges them, and enqueues work again.
    listed = cluster.cli("queues", "delayed", "--queue", "low", "--limit", "1000", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == statuses[202] and {r["name"] for r in rows} == {"tests.queues.jobs.mark"}
    purged = cluster.cli("queues", "delayed", "--purge", "--json")
    assert purged.returncode == 0 and json.loads(purged.stdout)["purged"]["low"] == statuses[202]
    assert json.loads(cluster.cli("queues", "delayed", "--json").stdout) == []
    again = request(cluster.url + "/api/enterprise/jobs", "POST", {"Content-Type": "application/json"},
                    json.dumps({"name": "tests.queues.jobs.mark", "args": ["k", "v"], "delay": 60}).encode())
    assert again[0] == 202, again
