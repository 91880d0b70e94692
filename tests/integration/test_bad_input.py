"""A client's bad input is a 4xx with a JSON body, never a 500 (issue 24, findings 8 and 9).

One real cluster (gunicorn workers, the supervisor, an embedded redis-server, one queue pool) serves every
test here. The property test lists the admin routes from the workers' own router, so a route added later is
fuzzed without anyone remembering to add it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.config import Settings
from cluster.workers.admin_guard import is_admin_path
from cluster.workers.app import build_app
from tests.support import ClusterProcess

pytestmark = pytest.mark.integration
TOKEN = "fuzz-" + "5d1c3b7a9e2f4a6c8b0d1e3f5a7c9b2d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENV = {
    "CLUSTER_ADMIN_TOKEN": TOKEN,
    # Long enough that a server waiting for a body that never comes would be seen waiting.
    "CLUSTER_SERVER_BODY_TIMEOUT": "600",
    "CLUSTER_QUEUES_JOBS_MODULE": "tests.queues.jobs",
    "CLUSTER_QUEUES_MEDIUM_WORKERS": "0", "CLUSTER_QUEUES_LOW_WORKERS": "0",
    "CLUSTER_QUEUES_BACKGROUND_WORKERS": "0", "CLUSTER_QUEUES_HIGH_WORKERS": "1",
    # The fuzzer sends hundreds of requests a second from one address.
    "CLUSTER_RATELIMIT_ENABLED": "false",
}
HANG_GUARD = 60.0  # not a speed bound: only so that a server that never answers fails the test


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    proc = ClusterProcess(tmp_path_factory.mktemp("bad-input") / "state", env=ENV, workers=1, queues=True)
    try:
        yield proc.start()
    finally:
        proc.close()


def raw(address: str | tuple[str, int], request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as it is (TCP or a unix socket); (status, body) of the answer."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(HANG_GUARD)
        sock.connect(address)
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += sock.recv(65536)
    return int(head.split()[1]), body


def send(cluster: ClusterProcess, method: str, target: str, headers: dict[str, str],
         body: bytes | None = None, port: int | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port or cluster.port, timeout=HANG_GUARD)
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def assert_json_4xx(status: int, body: bytes) -> dict[str, Any]:
    assert 400 <= status < 500, (status, body[:300])
    document = json.loads(body)
    assert isinstance(document, dict) and document.get("error"), document
    return document


def test_a_body_announced_over_the_limit_gets_413_before_any_byte_of_it(cluster: ClusterProcess) -> None:
    status, body = raw(("127.0.0.1", cluster.port),
                       b"POST /api/enterprise/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 10737418240\r\n\r\n")
    assert status == 413
    assert "over the limit" in json.loads(body)["error"]


def test_an_authorization_header_that_is_not_utf8_is_a_4xx(cluster: ClusterProcess) -> None:
    for port, path in ((cluster.port, b"/api/enterprise/queues/status"), (cluster.port, b"/api/enterprise/jobs/x"),
                       (cluster.metrics_port, b"/dashboard/api/dead")):
        status, body = raw(("127.0.0.1", port),
                           b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\xc3(\r\n"
                           b"Connection: close\r\n\r\n")
        assert_json_4xx(status, body)


@pytest.mark.parametrize("field", ["priority", "job_id"])
@pytest.mark.parametrize("value", [["high"], {"q": 1}, 3])
def test_a_job_field_of_the_wrong_type_is_a_400_naming_it(cluster: ClusterProcess, field: str, value: Any) -> None:
    for body in ({"name": "tests.queues.jobs.add", field: value}, [{"name": "tests.queues.jobs.add", field: value}]):
        status, answer = send(cluster, "POST", "/api/enterprise/jobs", {**AUTH, "Content-Type": "application/json"},
                              json.dumps(body).encode())
        assert field in assert_json_4xx(status, answer)["error"]


def test_a_garbage_cursor_on_the_dead_letter_pages_is_a_400(cluster: ClusterProcess) -> None:
    metrics_port = cluster.metrics_port
    for cursor in ("garbage", "1-2-3", "(", "9" * 30):
        query = urlencode({"queue": "high", "cursor": cursor})
        status, body = send(cluster, "GET", f"/dashboard/api/dead?{query}", AUTH, port=metrics_port)
        assert "cursor" in assert_json_4xx(status, body)["error"]
        status, body = raw(str(cluster.state_dir / "control.sock"),
                           f"GET /queues/dead?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        assert "cursor" in assert_json_4xx(status, body)["error"]
        status, page = send(cluster, "GET", f"/dashboard/queues?{query}", AUTH, port=metrics_port)
        assert status == 200 and b"is not a dead letter entry id" in page


# -- the property test: random input to every admin route --------------------------------------------------

def admin_routes() -> list[tuple[str, str]]:
    """(method, path template) of every admin route of the workers' app, from its router."""
    app = asyncio.run(build_app(Settings()))
    found = {(route.method, route.resource.canonical) for route in app.router.routes()
             if route.method != "HEAD" and route.resource is not None and is_admin_path(route.resource.canonical)}
    return sorted(found)


ROUTES = admin_routes()
# Names the handlers read, so the fuzzer reaches past "unknown field"; plus anything else.
KNOWN_KEYS = ["name", "args", "kwargs", "priority", "delay", "job_id", "queue", "cursor", "limit", "tag", "pattern",
              "metric", "severity", "duration", "reason", "until", "id", "comment", "state", "all"]
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
bodies = (st.none()
          | json_values.map(lambda v: json.dumps(v).encode())
          | st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=6).map(lambda v: json.dumps(v).encode())
          | st.binary(max_size=64))
# http.client sends latin-1; no CR/LF (the client refuses them, and they would be another request).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=40)
headers = st.fixed_dictionaries(
    {"Authorization": st.just(f"Bearer {TOKEN}") | header_text.map("Bearer {}".format)},
    optional={"Content-Type": st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"])
              | header_text,
              "X-Request-ID": header_text, "Accept": header_text, "Origin": header_text,
              "X-Forwarded-For": header_text, "Cookie": header_text, "If-None-Match": header_text})
queries = st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), st.text(max_size=30), max_size=5)
segments = st.text(min_size=1, max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), segment=segments, query=queries, head=headers, body=bodies)
def test_no_admin_route_answers_5xx_to_any_input(cluster: ClusterProcess, route: tuple[str, str], segment: str,
                                                 query: dict[str, str], head: dict[str, str],
                                                 body: bytes | None) -> None:
    method, template = route
    path = re.sub(r"\{[^}]+\}", quote(segment, safe=""), template)
    target = path + ("?" + urlencode(query) if query else "")
    status, answer = send(cluster, method, target, head, body)
    assert status < 500, (method, target, head, body, status, answer[:500])
    if status >= 400:
        assert_json_4xx(status, answer)


def test_the_fuzzed_routes_are_every_admin_route_of_the_router() -> None:
    methods = {method for method, _ in ROUTES}
    assert {"GET", "POST", "DELETE"} <= methods
    assert ("POST", "/api/enterprise/jobs") in ROUTES and len(ROUTES) >= 15
