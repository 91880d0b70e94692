"""The dashboard end to end: a real cluster (embedded Redis, pools), Debian's chromium driven by Playwright.

The supervisor's listener is bound to this host's non-loopback address when
it has one, so the browser (and urllib) are remote clients that must log in
with the admin token; without one, remote clients are simulated with a
proxy header on loopback. A screenshot of each page goes to the test's temp
dir; with DASHBOARD_SCREENSHOT=<path> the overview's is also copied there
(docs/img/dashboard.png is made that way).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import live_text
from tests.support import ClusterProcess, free_port, wait_for

pytestmark = pytest.mark.integration
TOKEN = "dashboard-test-token"
PAGES = ["", "processes", "queues", "replicas", "alerts"]
ACTIONS = ["scale", "reload", "restart", "recycle", "pause", "resume", "dead-retry", "dead-delete",
           "dead-retry-all", "run-now", "ack"]


def host_address() -> str | None:
    """A non-loopback IPv4 address of this host that we can connect to, or None."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    for address in out:
        if ":" in address:
            continue
        try:
            with socket.socket() as sock:
                sock.bind((address, 0))
            return address
        except OSError:
            continue
    return None


class Remote:
    """Plain HTTP as a non-loopback client of the dashboard."""

    def __init__(self, base: str, simulated: bool) -> None:
        self.base = base
        self.extra = {"X-Forwarded-For": "198.51.100.9"} if simulated else {}

    def request(self, method: str, path: str, data: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method=method,
                                         headers={**self.extra, **(headers or {})})
        opener = urllib.request.build_opener(NoRedirect())
        try:
            with opener.open(request, timeout=15) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Dash:
    """The test cluster and how to reach its dashboard."""

    cluster: ClusterProcess
    base: str
    remote: Remote

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.cli(*args)


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    address = host_address()
    port = free_port()
    env = {
        "CLUSTER_ADMIN_TOKEN": TOKEN, "CLUSTER_AUTOSCALE_ENABLED": "false",
        "CLUSTER_METRICS_BIND": f"{address or '127.0.0.1'}:{port}",
        "CLUSTER_DASHBOARD_HISTORY_STEP": "1",
        "QUEUE_HIGH_WORKERS": "1", "QUEUE_MEDIUM_WORKERS": "1", "QUEUE_LOW_WORKERS": "0",
        "QUEUE_BACKGROUND_WORKERS": "0",
    }
    proc = ClusterProcess(tmp_path_factory.mktemp("dash") / "state",
                          ["--jobs", "tests.dashboard.jobs", "--min-workers", "1", "--max-workers", "3"],
                          env=env, queues=True)
    base = f"http://{address or '127.0.0.1'}:{port}/dashboard/"
    proc.start()
    yield Dash(proc, base, Remote(base, simulated=address is None))
    proc.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser: Any, dash: Dash) -> Iterator[Any]:
    """A logged-in page (through the login form: the browser is a remote client)."""
    headers = dash.remote.extra
    context = browser.new_context(viewport={"width": 1280, "height": 900}, extra_http_headers=headers)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    response = tab.goto(dash.base)
    assert response.status == 401 and tab.locator("input[name=token]").count() == 1
    tab.fill("input[name=token]", TOKEN)
    tab.click("form.login button")
    tab.wait_for_selector("body[data-conn=live]", timeout=60_000)
    yield tab
    context.close()


def row(tab: Any, text: str) -> Any:
    return tab.locator("tr", has_text=text)


def redis_client(dash: Dash) -> Any:
    import redis

    settings = json.loads((dash.cluster.state_dir / "settings.json").read_text())
    return redis.Redis.from_url(settings["redis"]["url"], decode_responses=True)


def test_remote_clients_without_the_token_get_nothing_and_actions_need_the_csrf_token(
        dash: Dash) -> None:
    remote = dash.remote
    for path in PAGES + ["jobs/x", "stream?page=overview", "api/snapshot", "api/live?page=queues", "api/dead"]:
        status, _, body = remote.request("GET", path)
        assert status == 401, (path, status, body[:200])
        assert "Dashboard" not in body and "worker-count" not in body
    for action in ACTIONS:
        assert remote.request("POST", f"action/{action}", {"queue": "high"})[0] == 401, action
    assert remote.request("GET", "", headers={"Authorization": "Bearer wrong"})[0] == 403
    assert remote.request("GET", "static/dashboard.css")[0] == 200  # public: no data in it

    ours = {"Origin": dash.base.rsplit("/dashboard/", 1)[0]}
    assert remote.request("POST", "login", {"token": "wrong"}, ours)[0] == 401
    assert remote.request("POST", "login", {"token": TOKEN})[0] == 403  # not posted from one of our pages
    status, headers, _ = remote.request("POST", "login", {"token": TOKEN}, ours)
    assert status == 303
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = cookie.split(";", 1)[0]
    status, headers, body = remote.request("GET", "queues", headers={"Cookie": session})
    assert status == 200 and 'data-live-page="queues"' in body
    # The token is the server's, bound to the session: in the page, never taken from a cookie.
    token = re.search(r'<meta name="csrf" content="([^"]+)"', body).group(1)
    assert "Set-Cookie" not in headers and token not in cookie
    both = {"Cookie": session, **ours}
    assert remote.request("POST", "action/pause", {"queue": "low"}, both)[0] == 403
    assert remote.request("POST", "action/pause", {"queue": "low", "csrf": "forged"}, both)[0] == 403
    assert remote.request("POST", "action/pause", {"queue": "low", "csrf": token}, {"Cookie": session})[0] == 403
    assert remote.request("POST", "action/pause", {"queue": "low", "csrf": token}, both)[0] == 303
    assert redis_client(dash).exists("{cq:low}:paused")
    assert remote.request("POST", "action/resume", {"queue": "low", "csrf": token}, both)[0] == 303
    # A bearer header is no ambient credential: no CSRF token needed, JSON back.
    status, _, body = remote.request("POST", "action/resume", {"queue": "low"},
                                     {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(body) == {"queue": "low", "paused": False}


def test_the_worker_count_follows_cluster_scale_without_a_reload(page: Any, dash: Dash,
                                                                 shots: Path) -> None:
    paint = page.evaluate("performance.getEntriesByType('paint').map(e => [e.name, e.startTime])")
    print(f"overview first paint: {paint}")
    live_text(page, "[data-test=worker-count]", "1")
    page.evaluate("window.notReloaded = true")
    result = dash.cli("scale", "2")
    assert result.returncode == 0, result.stderr
    live_text(page, "[data-test=worker-count]", "2", timeout=120)
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    if target := os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shots / "overview.png", target)
    for name in ("processes", "replicas", "alerts"):
        page.goto(dash.base + name)
        page.wait_for_selector("body[data-conn=live]", timeout=60_000)
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.goto(dash.base + "processes")
    page.fill("input[name=workers]", "1")
    page.locator("form[action$='action/scale'] button", has_text="scale").first.click()
    live_text(page, "[data-test=worker-count]", "1", timeout=120)
    assert dash.cluster.status()["workers"]["target"] == 1


def test_a_dead_job_shows_up_and_is_retried_from_the_page(page: Any, dash: Dash, shots: Path) -> None:
    client = redis_client(dash)
    client.set("dash:fragile:broken", "1")
    out = dash.cli("queues", "enqueue", "tests.dashboard.jobs.fragile", "--args", '["dash:fragile"]')
    job_id = json.loads(out.stdout)["id"]
    wait_for(lambda: json.loads(dash.cli("jobs", "show", job_id).stdout or "{}").get("state") == "dead",
             60, 0.3, "the job to die")
    page.goto(dash.base + "queues?queue=high")
    assert row(page, job_id).count() == 1
    page.screenshot(path=str(shots / "queues.png"), full_page=True)
    client.delete("dash:fragile:broken")
    row(page, job_id).locator("form[action$='action/dead-retry'] button").click()
    page.wait_for_url("**msg=dead-retry*")
    wait_for(lambda: client.lrange("dash:fragile", 0, -1) == [job_id], 60, 0.2, "the retried job to run")
    assert json.loads(dash.cli("jobs", "show", job_id).stdout)["state"] == "done"
    page.goto(dash.base + f"jobs/{job_id}")
    assert "done" in page.inner_text("main") and "dash:fragile" in page.inner_text("main")
    page.goto(dash.base + "queues?queue=high")
    assert row(page, job_id).count() == 0


def test_a_queue_paused_from_the_page_holds_its_jobs_until_resumed(page: Any, dash: Dash) -> None:
    client = redis_client(dash)
    page.goto(dash.base + "queues")
    page.wait_for_selector("body[data-conn=live]", timeout=60_000)
    row(page, "medium").locator("form[action$='action/pause'] button").click()
    page.wait_for_url("**msg=pause*")
    page.wait_for_selector("body[data-conn=live]", timeout=60_000)
    live_text(page, "tr", "paused")
    for value in ("a", "b", "c"):
        assert dash.cli("queues", "enqueue", "tests.dashboard.jobs.note", "--args",
                           json.dumps(["dash:notes", value])).returncode == 0
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#live tr')).some("
        "r => r.cells[0] && r.cells[0].textContent === 'medium' && r.cells[2].textContent === '3')",
        timeout=60_000)
    assert client.llen("dash:notes") == 0  # shown waiting on the page, and not run
    row(page, "medium").locator("form[action$='action/resume'] button").click()
    wait_for(lambda: sorted(client.lrange("dash:notes", 0, -1)) == ["a", "b", "c"], 60, 0.2, "the jobs to run")


def test_what_the_page_does_the_cli_does(dash: Dash) -> None:
    client = redis_client(dash)
    assert dash.cli("queues", "pause", "medium").returncode == 0 and client.exists("{cq:medium}:paused")
    assert dash.cli("queues", "resume", "medium").returncode == 0 and not client.exists("{cq:medium}:paused")

    client.set("dash:cli:broken", "1")
    dead = [json.loads(dash.cli("queues", "enqueue", "tests.dashboard.jobs.fragile", "--args",
                                '["dash:cli"]').stdout)["id"] for _ in range(2)]
    wait_for(lambda: all(json.loads(dash.cli("jobs", "show", j).stdout or "{}").get("state") == "dead" for j in dead),
             60, 0.3, "the jobs to die")
    client.delete("dash:cli:broken")
    result = dash.cli("queues", "dead", "--retry-all", "--name", "tests.dashboard.jobs.fragile")
    assert result.returncode == 0 and result.stdout.strip() == "retried 2", result.stderr
    wait_for(lambda: sorted(client.lrange("dash:cli", 0, -1)) == sorted(dead), 60, 0.2, "the retried jobs to run")

    later = json.loads(dash.cli("queues", "enqueue", "tests.dashboard.jobs.note", "--delay", "3600", "--args",
                                '["dash:later", "x"]').stdout)["id"]
    assert dash.cli("queues", "run-now", "medium", later).returncode == 0
    wait_for(lambda: client.lrange("dash:later", 0, -1) == ["x"], 60, 0.2, "the delayed job to run now")
    assert dash.cli("jobs", "show", "no-such-job").returncode == 1

    def pids(group: str) -> list[int]:
        return [r["pid"] for r in dash.cluster.status()["processes"] if r["group"] == group and r["pid"]]

    pool = pids("queue-high")
    assert dash.cli("queues", "restart", "high").returncode == 0
    wait_for(lambda: pids("queue-high") and not set(pids("queue-high")) & set(pool), 60, 0.3, "a new high pool")
    worker = pids("http-worker")[0]
    assert dash.cli("workers", "recycle", str(worker)).returncode == 0
    wait_for(lambda: worker not in pids("http-worker") and pids("http-worker"), 60, 0.3, "a replacement worker")


def test_a_page_on_another_port_cannot_plant_a_cookie_and_drive_the_dashboard(browser: Any, dash: Dash) -> None:
    """Cookies are not isolated by port, and SameSite counts ports as the same site: a page on another
    port of the dashboard's host plants cluster_csrf=tossed and posts a pause form with it.

    The operator logged in, then restarted the browser: the session cookie (12 h) survives, cookies
    of the browser session do not, so there is no csrf cookie of ours for the planted one to lose to.
    """
    first = browser.new_context(extra_http_headers=dash.remote.extra)
    login = first.new_page()
    login.goto(dash.base)
    login.fill("input[name=token]", TOKEN)
    login.click("form.login button")
    login.wait_for_selector("body[data-conn=live]", timeout=60_000)
    state = first.storage_state()
    first.close()
    kept = [c for c in state["cookies"] if c.get("expires", -1) > 0]
    assert [c["name"] for c in kept] == ["cluster_session"], state["cookies"]
    context = browser.new_context(extra_http_headers=dash.remote.extra,
                                  storage_state={"cookies": kept, "origins": []})
    page = context.new_page()
    host = urllib.parse.urlsplit(dash.base).hostname
    target = dash.base + "action/pause"
    attack = (f"<!doctype html><body><script>document.cookie = 'cluster_csrf=tossed; path=/dashboard/';</script>"
              f'<form id="f" method="post" action="{target}"><input name="csrf" value="tossed">'
              f'<input name="queue" value="low"></form><script>document.getElementById("f").submit();</script>')

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = attack.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Attacker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda r: r.url == target) as posted:
            page.goto(f"http://{host}:{server.server_address[1]}/")
        answer = posted.value
        assert answer.status == 403, f"the forged pause was answered {answer.status}"
        assert "Origin" in answer.json()["error"] or "CSRF" in answer.json()["error"]
    finally:
        server.shutdown()
        server.server_close()
    try:
        assert not redis_client(dash).exists("{cq:low}:paused")
        # The logged-in operator's own page still works: its form carries the server's token.
        page.goto(dash.base + "queues")
        page.wait_for_selector("body[data-conn=live]", timeout=60_000)
        row(page, "low").locator("form[action$='action/pause'] button").click()
        page.wait_for_url("**msg=pause*")
        assert redis_client(dash).exists("{cq:low}:paused")
        row(page, "low").locator("form[action$='action/resume'] button").click()
        page.wait_for_url("**msg=resume*")
        wait_for(lambda: not redis_client(dash).exists("{cq:low}:paused"), 60, 0.2, "the queue to resume")
    finally:
        redis_client(dash).delete("{cq:low}:paused")
        context.close()


def test_the_page_falls_back_to_polling_when_the_stream_is_cut_and_recovers(page: Any,
                                                                            dash: Dash) -> None:
    cluster = dash.cluster
    assert cluster.proc is not None
    blocked = "**/dashboard/stream*"
    page.route(blocked, lambda route: route.abort())
    os.kill(cluster.proc.pid, signal.SIGSTOP)  # the stream goes silent: the page must notice by itself
    try:
        page.wait_for_selector("body[data-conn=polling], body[data-conn=offline]", timeout=60_000)
    finally:
        os.kill(cluster.proc.pid, signal.SIGCONT)
    page.wait_for_selector("body[data-conn=polling]", timeout=60_000)
    assert "polling" in page.inner_text("#conn")
    version = int(page.evaluate("document.body.dataset.version || 0"))
    page.wait_for_function(f"() => Number(document.body.dataset.version) > {version}", timeout=60_000)
    page.unroute(blocked)
    page.wait_for_selector("body[data-conn=live]", timeout=60_000)

    # An open dashboard does not hold the supervisor up when it stops: the streams end with it.
    result = dash.cli("stop", "--timeout", "50")
    assert result.returncode == 0, result.stderr
    page.wait_for_selector("body[data-conn=polling], body[data-conn=offline]", timeout=60_000)

