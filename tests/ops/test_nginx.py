"""A real nginx made from deploy/nginx/cluster.conf in front of one `cluster start`.

Requests through nginx answer 200, and the cluster tells the clients behind nginx apart by
their real addresses (X-Forwarded-For, believed because nginx's address is in
``server.trusted_proxies``): two clients on different loopback addresses each get their own
per-IP rate-limit budget, as the ``RateLimit`` header's remaining count shows.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.redis_fixture import RedisServer
from tests.ops.test_two_hosts import haproxy_config
from tests.support import ClusterProcess, free_port, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
LIMIT = 100

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("redis-server") is None,
                                reason="nginx and redis-server are needed (scripts/install-system-deps)")


def nginx_site(listen: int, upstream: int) -> str:
    """deploy/nginx/cluster.conf with this test's ports: one upstream host, nginx on loopback."""
    lines, server_done = [], False
    for line in (DEPLOY / "nginx" / "cluster.conf").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("server ") and stripped.endswith(";"):
            if server_done:
                continue  # the sample's second host
            line = line.replace(stripped.split()[1], f"127.0.0.1:{upstream}")
            server_done = True
        elif stripped == "listen 80;":
            line = line.replace("listen 80;", f"listen 127.0.0.1:{listen};")
        lines.append(line)
    assert server_done and f"listen 127.0.0.1:{listen};" in "\n".join(lines), "the shipped file changed shape"
    return "\n".join(lines) + "\n"


def nginx_main(prefix: Path, site: Path) -> str:
    """A main config that runs unprivileged in ``prefix`` (pid, temp dirs, logs) and includes the site."""
    temps = " ".join(f"{kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                       "scgi"))
    return (f"worker_processes 1; pid {prefix}/nginx.pid; error_log stderr notice;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{ access_log {prefix}/access.log; {temps} include {site}; }}\n")


@contextlib.contextmanager
def proxied(tmp_path: Path, start_proxy: Callable[[ClusterProcess, int], list[str]],
            name: str) -> Iterator[tuple[ClusterProcess, int]]:
    """One rate-limited cluster trusting 127.0.0.1, and the proxy ``start_proxy`` writes the config of."""
    redis_server = RedisServer(tmp_path / "redis").start()
    rules = [{"path": "/ping", "limit": f"{LIMIT}/hour", "per": "ip"}]
    env = {"REDIS_URL": redis_server.url, "CLUSTER_SERVER_TRUSTED_PROXIES": json.dumps(["127.0.0.1"]),
           "CLUSTER_RATELIMIT_RULES": json.dumps(rules)}
    cluster = ClusterProcess(tmp_path / "state", env=env, workers=2)
    port = free_port()
    proxy: subprocess.Popen[bytes] | None = None
    try:
        cluster.start()
        command = start_proxy(cluster, port)
        proxy = subprocess.Popen(command, stdout=(tmp_path / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)
        wait_for(lambda: proxy.poll() is None and _get(port, "127.0.0.1", "/readyz")[0] == 200, 60, 0.2,
                 f"{name} to serve")
        yield cluster, port
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(30)
        cluster.close()
        redis_server.stop()


@pytest.fixture
def nginx_in_front(tmp_path: Path) -> Iterator[tuple[ClusterProcess, int]]:
    site = tmp_path / "cluster.conf"
    main = tmp_path / "nginx.conf"

    def start(cluster: ClusterProcess, port: int) -> list[str]:
        site.write_text(nginx_site(port, cluster.port))
        main.write_text(nginx_main(tmp_path, site))
        check = subprocess.run(["nginx", "-t", "-c", str(main), "-p", str(tmp_path)],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr
        return ["nginx", "-c", str(main), "-p", str(tmp_path), "-g", "daemon off;"]

    with proxied(tmp_path, start, "nginx") as front:
        yield front


@pytest.fixture
def haproxy_in_front(tmp_path: Path) -> Iterator[tuple[ClusterProcess, int]]:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is needed (scripts/install-system-deps)")
    cfg = tmp_path / "haproxy.cfg"

    def start(cluster: ClusterProcess, port: int) -> list[str]:
        cfg.write_text(haproxy_config(port, [cluster.port, cluster.port]))  # the sample's two hosts: ours twice
        return ["haproxy", "-f", str(cfg), "-db"]

    with proxied(tmp_path, start, "haproxy") as front:
        yield front


def _get(port: int, source: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """GET 127.0.0.1:``port`` from the loopback address ``source`` (any of 127.0.0.0/8 on Linux)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    except OSError:
        return 0, {}
    finally:
        conn.close()


def remaining(headers: dict[str, str]) -> int:
    """r= of the IETF draft ``RateLimit`` header: what is left of this client's budget."""
    value = next(v for k, v in headers.items() if k.lower() == "ratelimit")  # HAProxy lowercases names
    return int(value.split(";r=")[1].split(";")[0])


def test_nginx_from_the_shipped_file_serves_and_passes_the_real_client_address(
        nginx_in_front: tuple[ClusterProcess, int]) -> None:
    cluster, port = nginx_in_front
    answers = {client: [_get(port, client, "/ping") for _ in range(3)] for client in ("127.0.0.2", "127.0.0.3")}
    assert all(status == 200 for replies in answers.values() for status, _ in replies), answers
    # Each client counts against its own budget: with nginx's address (the peer) as the key, the
    # second client's first request would find 3 fewer left. (The margin of 1 allows for the
    # sliding window's weighting should the test straddle a window's end.)
    firsts = {client: remaining(replies[0][1]) for client, replies in answers.items()}
    assert all(left >= LIMIT - 2 for left in firsts.values()), firsts
    # Straight to the cluster from 127.0.0.4 (not a trusted proxy), a forged header changes nothing:
    # believed, it would have counted against 127.0.0.2's budget (3 used).
    code, headers = _get(cluster.port, "127.0.0.4", "/ping", {"X-Forwarded-For": "127.0.0.2"})
    assert code == 200 and remaining(headers) >= LIMIT - 2, headers


def test_a_clients_own_forwarded_header_through_the_shipped_nginx_does_not_escape_its_rate_limit(
        nginx_in_front: tuple[ClusterProcess, int]) -> None:
    """The shipped config drops a client's Forwarded (and X-Real-IP and friends are overwritten or dropped),
    and the workers read only X-Forwarded-For: 12 spoofed addresses are one client, 127.0.0.5."""
    spoofs_spend_one_budget(nginx_in_front[1])


def test_a_clients_own_forwarding_headers_through_the_shipped_haproxy_do_not_escape_its_rate_limit(
        haproxy_in_front: tuple[ClusterProcess, int]) -> None:
    """The shipped HAProxy config deletes every client-set forwarding header before adding its own."""
    spoofs_spend_one_budget(haproxy_in_front[1], {"X-Forwarded-For": "10.9.6.1"})


def spoofs_spend_one_budget(port: int, more: dict[str, str] | None = None) -> None:
    lefts = []
    for n in range(12):
        spoof = {"Forwarded": f"for=10.9.9.{n}", "X-Real-IP": f"10.9.8.{n}", "True-Client-IP": f"10.9.7.{n}",
                 **(more or {})}
        code, headers = _get(port, "127.0.0.5", "/ping", spoof)
        assert code == 200, headers
        lefts.append(remaining(headers))
    # One budget, spent a request at a time (a spoofed address believed would start a fresh budget each time).
    assert lefts == sorted(lefts, reverse=True) and lefts[0] - lefts[-1] >= 10, lefts
