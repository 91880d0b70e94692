"""Who is admin, on a real cluster (issue 24): our own Host names only, unix sockets, header-less proxies,
login throttling, and the supervisor's listener against slow clients.

Each test here failed on the code before the change: a rebinding Host was served, a unix bind was
0777 and any user on it was admin, a trusted proxy sending no header was local, wrong logins were
answered (and logged) one by one without end, a trickling client held the listener's socket for an hour.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_security import TOKEN, request
from tests.support import ClusterProcess, run_cli, wait_for

pytestmark = pytest.mark.integration
REBIND = "rebind.attacker.test"
STATUS = "/api/enterprise/cluster/status"


def test_a_foreign_host_is_refused_on_a_worker_and_on_the_dashboard(
        cluster_factory: Callable[..., ClusterProcess]) -> None:
    """DNS rebinding: the browser's request comes from loopback, but names the attacker's host."""
    cluster = cluster_factory(workers=1)
    listener = cluster.metrics_url.rsplit("/", 1)[0]
    for base, port in ((cluster.url, cluster.port), (listener, cluster.metrics_port)):
        rebound = {"Host": f"{REBIND}:{port}", "Origin": f"http://{REBIND}:{port}"}
        for path in (STATUS, "/metrics", "/dashboard/", "/dashboard/api/snapshot", "/dashboard/login"):
            if base == cluster.url and path != STATUS:
                continue
            status, _, body = request(base + path, headers=rebound)
            assert status == 421, (base, path, status, body[:200])
            assert "server.allowed_hosts" in json.loads(body)["error"]
        # Our own names still answer, with any port: loopback names and addresses, and the bind.
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
            path = STATUS if base == cluster.url else "/dashboard/api/snapshot"
            assert request(base + path, headers={"Host": host})[0] == 200, (base, host)
    # A control action from the rebound page: refused before any CSRF or queue code runs.
    pause = request(f"{listener}/dashboard/action/pause", "POST",
                    {"Host": f"{REBIND}:{cluster.metrics_port}", "Origin": f"http://{REBIND}:{cluster.metrics_port}",
                     "Content-Type": "application/x-www-form-urlencoded"}, b"queue=high")
    assert pause[0] == 421
    # And server.allowed_hosts lets an operator name the instance.
    named = cluster_factory(workers=1, name="named", env={"CLUSTER_SERVER_ALLOWED_HOSTS": json.dumps([REBIND])})
    assert request(named.url + STATUS, headers={"Host": f"{REBIND}:{named.port}"})[0] == 200


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A dir every user may traverse (tmp_path's parents are 0700): the socket's own mode must keep them out."""
    path = Path(tempfile.mkdtemp(prefix="cluster-unix-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def unix_get(path: Path, target: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.settimeout(30)
    conn.sock.connect(str(path))
    try:
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def connect_as(uid: int, path: Path) -> str:
    """Connect to a unix socket as ``uid`` (a forked child that only makes system calls): the outcome's name."""
    outcomes = {0: "connected", 13: "PermissionError"}
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
            code = 0
        except PermissionError:
            code = 13
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return outcomes.get(os.waitstatus_to_exitcode(status), "other error")


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another user needs root")
def test_a_unix_bind_is_0600_and_its_peers_are_admin_only_by_the_same_rules(
        cluster_factory: Callable[..., ClusterProcess], public_dir: Path) -> None:
    sock = public_dir / "http.sock"
    cluster = cluster_factory("--bind", f"unix:{sock}", workers=1,
                              env={"CLUSTER_ADMIN_TOKEN": TOKEN, "CLUSTER_ADMIN_TRUST_LOCAL": "false"})
    wait_for(lambda: sock.exists(), 60, 0.1, "the unix socket")
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
    # Another local user cannot even connect.
    assert connect_as(65534, sock) == "PermissionError"
    # We can, and a unix peer is admin like any other: with the token (trust_local is off here).
    assert unix_get(sock, "/ping") == 200
    assert unix_get(sock, STATUS) == 401
    assert unix_get(sock, STATUS, {"Authorization": f"Bearer {TOKEN}"}) == 200
    assert unix_get(sock, STATUS, {"Host": f"{REBIND}", "Authorization": f"Bearer {TOKEN}"}) == 421


def test_a_header_less_proxy_listed_in_trusted_proxies_is_not_admin(
        cluster_factory: Callable[..., ClusterProcess]) -> None:
    """A bare proxy_pass, HAProxy in TCP mode or stunnel on 127.0.0.1 sends no forwarding header."""
    cluster = cluster_factory(workers=1, env={"CLUSTER_SERVER_TRUSTED_PROXIES": json.dumps(["127.0.0.1"])})

    def get(source: str, target: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=30, source_address=(source, 0))
        try:
            conn.request("GET", target)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    assert get("127.0.0.1", STATUS) == 403  # the proxy's own address: never local, header or not
    assert get("127.0.0.1", "/ping") == 200
    assert get("127.0.0.2", STATUS) == 200  # another loopback peer, not a proxy: local
    # The metrics listener takes the same rule.
    status, _, _ = request(cluster.metrics_url)
    assert status == 403


def test_dashboard_logins_are_throttled_with_retry_after_and_logged_once_per_window(
        cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory(workers=1, env={"CLUSTER_ADMIN_TOKEN": TOKEN})
    base = f"http://127.0.0.1:{cluster.metrics_port}/dashboard/"
    form = {"Origin": f"http://127.0.0.1:{cluster.metrics_port}",
            "Content-Type": "application/x-www-form-urlencoded"}
    answers = [request(base + "login", "POST", form, b"token=wrong-token-guess-000") for _ in range(40)]
    statuses = [status for status, _, _ in answers]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
    throttled = answers[-1]
    assert int(throttled[1]["Retry-After"]) >= 1 and json.loads(throttled[2])["status"] == 429
    # The right token is held back too while the client is throttled: no guessing through.
    assert request(base + "login", "POST", form, f"token={TOKEN}".encode())[0] == 429
    # Another client is not: a remote one would come through its own address; a local one is trusted anyway.

    def login_lines() -> list[dict]:
        return [line for line in cluster.logs() if "dashboard login" in line.get("message", "")
                and line.get("level") == "WARNING"]

    assert len(login_lines()) <= 1
    (line,) = wait_for(login_lines, 120, 0.5, "the window's one login line")
    assert line["refused"] == 5 and line["throttled"] == 36 and line["clients"] == 1, line
    assert TOKEN not in json.dumps(cluster.logs())


def test_the_supervisor_listener_closes_slow_headers_and_times_out_slow_bodies(
        cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory(workers=1, env={"CLUSTER_SERVER_BODY_TIMEOUT": "1"})
    # Half a request head, then nothing: the listener closes the connection (it held it for an hour).
    with socket.create_connection(("127.0.0.1", cluster.metrics_port), timeout=60) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert slow.recv(1024) == b""
    # A body that stops arriving: 408.
    with socket.create_connection(("127.0.0.1", cluster.metrics_port), timeout=60) as slow:
        slow.sendall(b"POST /dashboard/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Origin: http://127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100\r\n\r\ntoken=abc")
        assert slow.recv(1024).startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize("env, key", [({"CLUSTER_ADMIN_TOKEN": "a"}, "admin.token"),
                                      ({"CLUSTER_ALERTS_ACK_SECRET": "a"}, "alerts.ack_secret"),
                                      ({"CLUSTER_SERVER_TRUSTED_PROXIES": '["nginx"]'}, "server.trusted_proxies")])
def test_short_secrets_and_a_proxy_name_fail_config_check(env: dict[str, str], key: str) -> None:
    result = run_cli("config", "check", env=env, timeout=60)
    assert result.returncode == 2 and key in result.stderr, result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a socket to another group needs root")
def test_a_unix_bind_takes_the_configured_mode_and_group(
        cluster_factory: Callable[..., ClusterProcess], public_dir: Path) -> None:
    sock = public_dir / "http.sock"
    cluster_factory("--bind", f"unix:{sock}", workers=1,
                    env={"CLUSTER_SERVER_UNIX_MODE": "0660", "CLUSTER_SERVER_UNIX_GROUP": "65534"})
    wait_for(lambda: sock.exists() and os.stat(sock).st_gid == 65534, 60, 0.1, "the socket's group")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
