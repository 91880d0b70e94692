"""The dashboard's pure parts: sessions and CSRF, the producer's fan-out, rates, replica changes, rendering."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from cluster.dashboard import auth, csrf, render
from cluster.dashboard.history import History
from cluster.dashboard.producer import CLOSED, Producer
from cluster.dashboard.snapshot import rates, replica_changes, replicas_url
from cluster.dashboard.web import _back
from cluster.workers.admin_auth import AdminPolicy
from tests.support import run_async

TOKEN = "s3cret-token-of-16"
HOST = {"Host": "127.0.0.1:8199"}


def test_a_session_comes_only_from_the_token_and_expires() -> None:
    sessions = auth.Sessions(ttl=60)
    assert sessions.login("wrong", TOKEN, now=0) is None
    assert sessions.login(TOKEN, None, now=0) is None
    sid = sessions.login(TOKEN, TOKEN, now=0)
    assert sid and sessions.valid(sid, now=59) and not sessions.valid(sid, now=61)
    sessions.logout(sid)
    assert not sessions.valid(sid, now=1)


def test_who_may_see_the_dashboard() -> None:
    sessions = auth.Sessions(ttl=60)
    sid = sessions.login(TOKEN, TOKEN)
    remote = "192.0.2.7"
    policy, no_token = AdminPolicy(TOKEN), AdminPolicy(None)
    assert auth.refusal("127.0.0.1", HOST, {}, sessions, policy) is None
    assert auth.refusal(remote, HOST, {}, sessions, policy) == (401, auth.admin_refusal(remote, HOST, policy)[1])
    assert auth.refusal(remote, HOST, {}, sessions, no_token)[0] == 403
    assert auth.refusal(remote, HOST, {auth.SESSION_COOKIE: sid}, sessions, policy) is None
    assert auth.refusal(remote, HOST, {auth.SESSION_COOKIE: "forged"}, sessions, policy)[0] == 401
    assert auth.refusal(remote, {"Authorization": f"Bearer {TOKEN}", **HOST}, {}, sessions, policy) is None
    assert auth.refusal("127.0.0.1", {"X-Forwarded-For": "1.2.3.4", **HOST}, {}, sessions, policy)[0] == 401
    # A session is no way around our own names (DNS rebinding with a logged-in browser).
    rebound = {"Host": "rebind.attacker.test:8199"}
    assert auth.refusal(remote, rebound, {auth.SESSION_COOKIE: sid}, sessions, policy)[0] == 421
    assert auth.refusal("127.0.0.1", rebound, {}, sessions, policy)[0] == 421


def test_an_action_needs_a_server_issued_token_of_its_binding_and_our_origin() -> None:
    sessions = auth.Sessions(ttl=60)
    tokens = csrf.CsrfTokens(sessions)
    ours = {"Origin": "http://127.0.0.1:8199", **HOST}
    nonce = tokens.nonces.issue()
    local = {csrf.NONCE_COOKIE: nonce}
    good = tokens.token(f"nonce:{nonce}")
    assert tokens.refusal(ours, local, good) is None
    assert tokens.refusal({"Referer": "http://127.0.0.1:8199/dashboard/queues", **HOST}, local, good) is None
    assert tokens.refusal(ours, local, None) and tokens.refusal(ours, local, good[:-1] + "x")
    # Cookie tossing from another port: a planted value is no nonce of ours, and no token is its own value.
    planted = {csrf.NONCE_COOKIE: "tossed"}
    assert tokens.refusal(ours, planted, "tossed") and tokens.refusal(ours, planted, good)
    # Another port of the same host (a different origin), no origin at all, or an opaque one.
    for origin in ({"Origin": "http://127.0.0.1:18090"}, {}, {"Origin": "null"}):
        assert "Origin" in (tokens.refusal({**origin, **HOST}, local, good) or ""), origin
    # A login rotates it: the session's token differs from the nonce's, and the nonce's token is void then.
    sid = sessions.login(TOKEN, TOKEN)
    logged_in = {auth.SESSION_COOKIE: sid, **local}
    assert tokens.refusal(ours, logged_in, good)
    assert tokens.refusal(ours, logged_in, tokens.token(f"session:{sid}")) is None
    assert tokens.refusal({"Authorization": "Bearer x"}, {}, None) is None  # a browser never sends this itself


def test_ten_listeners_cost_one_build_and_one_render_per_page() -> None:
    builds: list[int] = []

    async def build() -> dict[str, Any]:
        builds.append(1)
        return {"at": time.time(), "n": len(builds)}

    def render_page(page: str, snapshot: dict[str, Any]) -> str:
        return f"{page}@{snapshot['n']}"

    async def scenario() -> None:
        producer = Producer(build, render_page)
        boxes = [producer.subscribe("overview") for _ in range(10)] + [producer.subscribe("queues")]
        await producer.tick()
        await producer.tick()
        assert len(builds) == 2 and producer.renders == 4
        messages = [await box.get(1) for box in boxes]
        assert {m for m in messages[:10]} == {messages[0]}  # the same bytes for every overview listener
        data = json.loads(messages[0].decode().split("data: ", 1)[1])
        assert data["html"] == "overview@2" and data["version"] == 2  # the newest only
        assert json.loads(messages[10].decode().split("data: ", 1)[1])["html"] == "queues@2"
        for box in boxes:
            producer.unsubscribe(box)
        assert producer.listeners == 0
        assert await producer.current() is producer.latest and len(builds) == 2  # fresh: no rebuild
        producer.changed()
        await producer.current()
        assert len(builds) == 3
        open_box = producer.subscribe("overview")
        await open_box.get(1)
        producer.close()  # the supervisor stops: every stream ends, new ones end at once
        assert await open_box.get(1) == CLOSED and await producer.subscribe("alerts").get(1) == CLOSED

    run_async(scenario)


def test_queue_rates_come_from_counter_deltas() -> None:
    first = {"high": {"processed": 10, "enqueued": 20}}
    marks = rates({}, first, 100.0)
    assert first["high"]["processed_per_s"] is None
    second = {"high": {"processed": 30, "enqueued": 25}}
    rates(marks, second, 102.0)
    assert second["high"]["processed_per_s"] == 10.0 and second["high"]["enqueued_per_s"] == 2.5


def test_a_replica_that_stops_turns_down_on_the_page_and_in_its_history() -> None:
    hosts = [{"host": "db2:5432", "role": "replica", "state": "down", "weight": 1, "lag_seconds": None,
              "lag_bytes": None, "connections": {"in_use": 0, "idle": 0}, "errors": 3}]
    events = replica_changes({"db2:5432": "up"}, hosts, 50.0)
    assert events == [{"at": 50.0, "kind": "replica", "host": "db2:5432", "from": "up", "to": "down"}]
    snapshot = {"at": 60.0, "replicas": {"enabled": True, "hosts": hosts, "strategy": "round_robin",
                                         "fallback": "primary", "error": None}, "replica_events": events}
    html = render.live("replicas", snapshot)
    assert '<span class="st down" data-test="replica-state">down</span>' in html
    assert "up → down" in html and "10s ago" in html


def test_pages_escape_what_they_show_and_hide_actions_when_read_only() -> None:
    snapshot = {"at": 0.0, "read_only": True, "queues": {"error": None, "queues": {"high": {
        "paused": False, "depth": 1, "in_flight": 0, "delayed": 0, "processed": 0, "failed": 0,
        "dead_letter_size": 0, "oldest_age_seconds": None, "consumers": 1}}}}
    assert "<form" not in render.live("queues", snapshot)
    snapshot["read_only"] = False
    assert 'action="/dashboard/action/pause"' in render.live("queues", snapshot)
    job = {"id": "j1", "queue": "high", "name": "<script>", "state": "dead", "error": "<b>"}
    html = render.job_section(job, "j1")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html


def test_an_action_goes_back_to_our_own_page_only() -> None:
    assert _back("http://h:8199/dashboard/queues?queue=low&msg=old", "pause: done") == \
        "/dashboard/queues?queue=low&msg=pause%3A+done"
    assert _back("https://evil.example/x", "m").startswith("/dashboard/?")
    assert _back(None, "m") == "/dashboard/?msg=m"


def test_history_in_memory_is_bounded_and_read_by_time() -> None:
    history = History(max_points=3)

    async def scenario() -> None:
        for at in range(5):
            await history.add_point({"at": float(at)})
        await history.add_event({"at": 4.0, "kind": "autoscale"})

    run_async(scenario)
    assert [p["at"] for p in history.points(0)] == [2.0, 3.0, 4.0]
    assert [p["at"] for p in history.points(3.5)] == [4.0]
    assert history.events(4.0)[0]["kind"] == "autoscale" and history.backend == "memory"


def test_the_replica_status_url_of_a_bind_address() -> None:
    assert replicas_url("0.0.0.0:8000") == ("http://127.0.0.1:8000/api/enterprise/replicas/status", None)
    assert replicas_url("[::1]:8000")[0] == "http://[::1]:8000/api/enterprise/replicas/status"
    assert replicas_url("unix:/run/c.sock") == ("http://localhost/api/enterprise/replicas/status", "/run/c.sock")


def test_the_overview_draws_workers_against_bounds_with_each_decision_and_its_reason() -> None:
    now = 10_000.0
    decision = {"at": now - 60, "kind": "autoscale", "from": 2, "to": 3, "direction": "up",
                "reason": "mean CPU 91% > 80%"}
    snapshot = {
        "at": now, "read_only": False, "health": {"score": 88, "level": "healthy"},
        "metrics": {"cpu": {"value": 91.0, "unit": "%", "state": "critical", "trend": "rising"}},
        "sparks": {"cpu": [10.0, 50.0, 91.0]},
        "workers": {"current": 3, "target": 3, "min": 2, "max": 8, "mode": "auto",
                    "autoscale": {"mode": "auto", "last_decision": {"direction": "up", "target": 3,
                                                                    "reason": "mean CPU 91% > 80%"}}},
        "worker_history": [[now - 120, 2, 2, 2, 8], [now - 60, 3, 3, 2, 8], [now, 3, 3, 2, 8]],
        "decisions": [decision],
        "http": {"rps": 12.5, "p95": 0.042, "error_rate": 0.0},
        "alerts": {"active": [{"id": "a1", "severity": "critical", "metric": "cpu", "state": "firing",
                               "value": 91.0, "threshold": 90.0, "since": now - 30, "acknowledged": False}],
                   "recent": []},
    }
    html = render.live("overview", snapshot)
    assert '<div class="big" data-test="worker-count">3</div>' in html
    assert "<title>2 → 3: mean CPU 91% &gt; 80%</title>" in html and "max 8" in html and "min 2" in html
    assert "60s ago" in html and 'action="/dashboard/action/ack"' in html and "polyline" in html


def test_read_only_refuses_every_action_even_with_the_csrf_token() -> None:
    from types import SimpleNamespace

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from cluster.dashboard.actions import ACTIONS
    from cluster.dashboard.component import Dashboard
    from cluster.config import Settings

    supervisor = SimpleNamespace(settings=Settings.model_validate({"dashboard": {"read_only": True}}),
                                 components=[])

    async def scenario() -> list[tuple[int, str]]:
        app = web.Application()
        dashboard = Dashboard(supervisor)  # type: ignore[arg-type]
        dashboard.add_listener_routes(app)
        async with TestClient(TestServer(app)) as client:
            tokens = dashboard.web.csrf
            nonce = tokens.nonces.issue()
            client.session.cookie_jar.update_cookies({csrf.NONCE_COOKIE: nonce})
            origin = {"Origin": f"http://{client.host}:{client.port}"}
            answers = []
            for name in ACTIONS:
                response = await client.post(f"/dashboard/action/{name}", headers=origin,
                                             data={"csrf": tokens.token(f"nonce:{nonce}"), "queue": "high"})
                answers.append((response.status, (await response.json())["error"]))
            return answers

    for status, error in run_async(scenario):
        assert status == 403 and "read-only" in error


def test_session_cookies_are_secure_over_https_from_a_trusted_proxy_or_when_forced() -> None:
    from types import SimpleNamespace

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from cluster.config import Settings
    from cluster.dashboard.component import Dashboard

    async def login_cookie(settings: dict[str, Any], headers: dict[str, str]) -> str:
        supervisor = SimpleNamespace(settings=Settings.model_validate(settings), components=[])
        app = web.Application()
        Dashboard(supervisor).add_listener_routes(app)  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            origin = {"Origin": f"http://{client.host}:{client.port}", **headers}
            response = await client.post("/dashboard/login", data={"token": TOKEN}, headers=origin,
                                         allow_redirects=False)
            assert response.status == 303
            return response.headers["Set-Cookie"]

    def cookie(settings: dict[str, Any], headers: dict[str, str]) -> str:
        return asyncio.run(login_cookie({"admin": {"token": TOKEN}, **settings}, headers))

    https = {"X-Forwarded-Proto": "https"}
    behind = {"server": {"trusted_proxies": ["127.0.0.1"]}}
    assert "Secure" in cookie(behind, https)
    assert "Secure" not in cookie(behind, {})
    assert "Secure" not in cookie({}, https)  # anyone can write the header: only a trusted proxy is believed
    assert "Secure" in cookie({"dashboard": {"cookie_secure": True}}, {})
