"""Monitoring on a real cluster: alerts reach real receivers once, /metrics sums across workers."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.alert_receivers import HttpReceiver, SmtpReceiver
from tests.support import ClusterProcess, http_get, wait_for

pytestmark = pytest.mark.integration

QUIET = {
    # Only the error rate may alert here: the test machine's CPU and memory are not under test.
    "CLUSTER_MONITORING_CPU_WARNING": "1000", "CLUSTER_MONITORING_CPU_CRITICAL": "1000",
    "CLUSTER_MONITORING_MEMORY_WARNING": "1000", "CLUSTER_MONITORING_MEMORY_CRITICAL": "1000",
    "CLUSTER_MONITORING_RESPONSE_TIME_WARNING": "1000", "CLUSTER_MONITORING_RESPONSE_TIME_CRITICAL": "1000",
}


def post(url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method="POST", data=b"{}", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Load:
    """A bounded load loop in threads: GETs ``path`` until stopped or ``limit`` requests were sent."""

    def __init__(self, base: str, path: str, threads: int = 4, limit: int = 20000) -> None:
        self.base, self.path, self.limit = base, path, limit
        self.sent = 0
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads)
        self._futures = [self._pool.submit(self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self.sent >= self.limit:
                    return
                self.sent += 1
                n = self.sent
            status, _, _ = http_get(f"{self.base}{self.path.format(n=n % 7)}", timeout=10)
            with self._lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1

    def stop(self) -> dict[int, int]:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()
        return self.statuses


def error_rate_items(receiver_bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The error-rate alerts of grouped messages, in order."""
    return [a for b in receiver_bodies for a in b["alerts"] if a["alert"]["metric"] == "error_rate"]


def error_rate_notes(receiver_bodies: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["kind"], a["alert"]["severity"]) for a in error_rate_items(receiver_bodies)]


def telegram_texts(receiver: HttpReceiver, prefix: str) -> list[str]:
    return [a["body"]["text"] for a in receiver.accepted
            if any(line.startswith(prefix) for line in a["body"]["text"].splitlines())]


@pytest.fixture
def receivers(tmp_path: Path):
    webhook = HttpReceiver(reject_first=1).start()
    telegram = HttpReceiver().start()
    smtp = SmtpReceiver(tmp_path, "alerts", "s3cret").start()
    yield webhook, telegram, smtp
    webhook.stop()
    telegram.stop()
    smtp.stop()


def test_error_rate_alert_fires_once_on_every_channel_and_resolves(
        cluster_factory: Callable[..., ClusterProcess], receivers, tmp_path: Path) -> None:
    webhook, telegram, smtp = receivers
    env = {
        **QUIET,
        "CLUSTER_MONITORING_METRICS_INTERVAL": "0.5",
        "CLUSTER_MONITORING_WINDOW": "3",
        "CLUSTER_MONITORING_ALERT_FOR": "1",
        "CLUSTER_MONITORING_ALERT_COOLDOWN": "600",
        "CLUSTER_MONITORING_STARTUP_GRACE": "0",
        "CLUSTER_MONITORING_ALERT_CLEAR_FOR": "1",
        "CLUSTER_ALERTS_GROUP_WAIT": "0.2",
        "CLUSTER_ALERTS_WEBHOOK_URL": f"{webhook.url}/hooks/cluster",
        "CLUSTER_ALERTS_WEBHOOK_HEADERS": json.dumps({"Authorization": "Bearer hook-token"}),
        "CLUSTER_ALERTS_TELEGRAM_BOT_TOKEN": "123:ABC",
        "CLUSTER_ALERTS_TELEGRAM_CHAT_ID": "-1001",
        "CLUSTER_ALERTS_TELEGRAM_API_BASE": telegram.url,
        "CLUSTER_ALERTS_SMTP_HOST": "127.0.0.1",
        "CLUSTER_ALERTS_SMTP_PORT": str(smtp.port),
        "CLUSTER_ALERTS_SMTP_USERNAME": "alerts",
        "CLUSTER_ALERTS_SMTP_PASSWORD": "s3cret",
        "CLUSTER_ALERTS_EMAIL_FROM": "cluster@example.test",
        "CLUSTER_ALERTS_EMAIL_TO": "oncall@example.test",
    }
    cluster = cluster_factory("tests.apps.flaky:app()", env=env, workers=2)

    load = Load(cluster.url, "/flaky/item{n}")
    try:
        wait_for(lambda: error_rate_notes([a["body"] for a in webhook.accepted]), 90, 0.2, "the webhook alert")
        wait_for(lambda: telegram_texts(telegram, "CRITICAL: error_rate"), 60, 0.2, "the telegram alert")
        wait_for(lambda: error_rate_notes([m["body"] for m in smtp.messages]), 60, 0.2, "the email alert")
        alerts = json.loads(http_get(f"{cluster.url}/api/enterprise/alerts")[2])
        (active,) = [a for a in alerts["active"]
                     if a["metric"] == "error_rate" and a["state"] == "firing" and not a["inhibited"]]
        assert active["severity"] == "critical"
        status, acked = post(f"{cluster.url}/api/enterprise/alerts/{active['id']}/resolve")
        assert status == 200 and acked["acknowledged"] is True
        assert post(f"{cluster.url}/api/enterprise/alerts/0000000000000000/resolve")[0] == 404
        assert post(f"{cluster.url}/api/enterprise/alerts/not-an-id!/resolve")[0] == 400
        health = json.loads(http_get(f"{cluster.url}/health")[2])
        assert "health_score" in health["checks"]
        assert "health score" in cluster.cli("status").stdout
    finally:
        statuses = load.stop()
    assert statuses.get(500, 0) > 0

    # errors stop: only good requests from now on. On its way down the rate may cross the
    # warning band: critical resolves, warning fires (no longer inhibited), then resolves too.
    good = Load(cluster.url, "/ping", threads=2, limit=5000)

    def all_resolved(notes: list[tuple[str, str]]) -> bool:
        fired = [sev for kind, sev in notes if kind == "firing"]
        return ("resolved", "critical") in notes and all(notes.count(("resolved", sev)) == 1 for sev in fired)

    def no_active_error_rate() -> bool:
        alerts = json.loads(http_get(f"{cluster.url}/api/enterprise/alerts")[2])
        return not [a for a in alerts["active"] if a["metric"] == "error_rate"]

    try:
        wait_for(no_active_error_rate, 90, 0.2, "the error-rate alerts to resolve")
        wait_for(lambda: all_resolved(error_rate_notes([a["body"] for a in webhook.accepted])), 60, 0.2,
                 "the resolved webhook notifications")
        wait_for(lambda: telegram_texts(telegram, "RESOLVED critical: error_rate"), 60, 0.2, "the resolved telegram")
        wait_for(lambda: all_resolved(error_rate_notes([m["body"] for m in smtp.messages])), 60, 0.2,
                 "the resolved emails")
    finally:
        good.stop()

    hook = [a for a in webhook.accepted if error_rate_items([a["body"]])]
    notes = error_rate_notes([a["body"] for a in hook])
    assert notes[0] == ("firing", "critical")
    assert notes.count(("firing", "critical")) == 1 and notes.count(("resolved", "critical")) == 1
    assert notes.index(("resolved", "critical")) > 0
    assert webhook.rejected == 1  # the 429 was retried, and only one copy was accepted
    assert hook[0]["path"] == "/hooks/cluster"
    assert hook[0]["headers"]["Authorization"] == "Bearer hook-token"
    assert error_rate_items([hook[0]["body"]])[0]["alert"]["value"] >= 5.0

    tg = [a for a in telegram.accepted if "error_rate" in a["body"]["text"]]
    assert {a["path"] for a in tg} == {"/bot123:ABC/sendMessage"}
    assert tg[0]["body"]["chat_id"] == "-1001"
    assert "CRITICAL: error_rate" in tg[0]["body"]["text"]
    assert len(telegram_texts(telegram, "CRITICAL: error_rate")) == 1
    assert len(telegram_texts(telegram, "RESOLVED critical: error_rate")) == 1

    mails = [m for m in smtp.messages if error_rate_items([m["body"]])]
    assert error_rate_notes([m["body"] for m in mails]) == notes
    assert all(m["tls"] and m["authenticated"] for m in mails)
    assert mails[0]["to"] == ["oncall@example.test"]
    assert "CRITICAL: error_rate" in mails[0]["text"] and mails[0]["subject"].startswith("[cluster] ")

    (Path(os.environ.get("MONITORING_EVIDENCE", tmp_path)) / "alerts-received.json").write_text(json.dumps(
        {"webhook": hook[0], "telegram": tg[0], "email": mails[0]}, indent=2, default=str))


def scrape(url: str) -> dict[str, Any]:
    status, _, body = http_get(url)
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def ping_total(families: dict[str, Any]) -> float:
    return sum(s.value for s in families["http_requests"].samples
               if s.name == "http_requests_total" and s.labels["route"] == "/ping")


def test_metrics_sum_every_worker_after_one_was_killed(cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory(env={"CLUSTER_MONITORING_METRICS_INTERVAL": "0.5"}, workers=2)
    pids_answering: set[int] = set()

    def hit(times: int) -> None:
        for _ in range(times):
            status, _, _ = http_get(f"{cluster.url}/ping")
            assert status == 200

    hit(150)

    def both_answered() -> bool:
        # Concurrent connections: one at a time, the kernel may hand every accept to the same idle worker.
        with ThreadPoolExecutor(8) as pool:
            bodies = pool.map(lambda _: http_get(f"{cluster.url}/api/enterprise/status")[2], range(16))
            pids_answering.update(json.loads(body)["pid"] for body in bodies)
        return len(pids_answering) == 2

    wait_for(both_answered, 60, 0.1, "both workers to answer")
    # Workers publish their tallies every second: what a worker published stays counted after it dies.
    wait_for(lambda: ping_total(scrape(cluster.metrics_url)) == 150, 30, 0.2, "150 pings in /metrics")
    victim = sorted(pids_answering)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in cluster.worker_pids() and len(cluster.worker_pids()) == 2, 60, 0.2,
             "the replacement worker")
    hit(100)

    wait_for(lambda: ping_total(scrape(cluster.metrics_url)) == 250, 30, 0.2, "250 pings in /metrics")
    families = scrape(cluster.metrics_url)
    assert ping_total(families) == 250
    # the dead worker's files get folded into the archive without changing the sum
    metrics_dir = cluster.state_dir / "metrics"
    wait_for(lambda: not list(metrics_dir.glob(f"*_{victim}.db")), 30, 0.2, "the victim's files to be folded")
    families = scrape(cluster.metrics_url)
    assert ping_total(families) == 250
    assert (metrics_dir / "counter_archive.db").exists()
    restarts = {s.labels["child"]: s.value for s in families["cluster_child_restarts"].samples
                if s.name == "cluster_child_restarts_total"}
    assert restarts["http-worker"] >= 1
    workers = families["cluster_workers"].samples[0].value
    assert workers == 2
    assert {s.labels["group"] for s in families["cluster_process_resident_memory_bytes"].samples} >= {
        "supervisor", "http", "http-worker"}
    # /health probes and /api/enterprise/status are labelled by route template, unknown paths by a fixed label
    http_get(f"{cluster.url}/no/such/path/12345")
    routes = wait_for(lambda: (r := {s.labels["route"] for s in scrape(cluster.metrics_url)["http_requests"].samples})
                      and "__unmatched__" in r and r, 30, 0.2, "the unmatched route in /metrics")
    assert not any("12345" in r for r in routes)

    # the same text on the control socket
    result = cluster.cli("status", "--json")
    assert json.loads(result.stdout)["monitoring"]["metrics_files"]["folded_files"] >= 1
    metrics = json.loads(http_get(f"{cluster.url}/api/enterprise/metrics")[2])
    assert set(metrics["metrics"]) == {"cpu", "memory", "response_time", "error_rate", "concurrent_users",
                                      "queue_size"}
    assert 0 <= metrics["health"]["score"] <= 100
    assert metrics["workers"]["current"] == 2
    top = cluster.cli("top", "--once")
    assert top.returncode == 0, top.stderr
    assert "error_rate" in top.stdout and "health" in top.stdout and "worker-" in top.stdout
