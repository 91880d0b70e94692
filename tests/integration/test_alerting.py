"""Alerting on a real cluster: start-up grace and honest /health on a saturated host; grouped messages
on every channel; an escalation that survives a supervisor restart and stops on `cluster alerts ack`;
signed one-time acknowledge links; silences from the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alert_receivers import HttpReceiver, SmtpReceiver, TwilioReceiver
from tests.support import ClusterProcess, http_get, wait_for

pytestmark = pytest.mark.integration
QUIET = {
    f"CLUSTER_MONITORING_{metric}_{level}": "1000000"
    for metric in ("CPU", "MEMORY", "RESPONSE_TIME", "ERROR_RATE", "CONCURRENT_USERS", "QUEUE_SIZE")
    for level in ("WARNING", "CRITICAL")
}
STEP_MINUTES = 0.1  # 6 s between escalation steps


@pytest.fixture
def burner() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Spinning processes, one per core: the host is saturated while they run."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[dict[str, Any]]:
    found = {"webhook": HttpReceiver().start(), "telegram": HttpReceiver().start(),
             "smtp": SmtpReceiver(tmp_path, "alerts", "s3cret").start(), "sms": TwilioReceiver().start()}
    yield found
    for receiver in found.values():
        receiver.stop()


def channel_env(r: dict[str, Any]) -> dict[str, str]:
    return {
        "CLUSTER_ALERTS_WEBHOOK_URL": f"{r['webhook'].url}/hook",
        "CLUSTER_ALERTS_TELEGRAM_BOT_TOKEN": "123:ABC",
        "CLUSTER_ALERTS_TELEGRAM_CHAT_ID": "-1001",
        "CLUSTER_ALERTS_TELEGRAM_API_BASE": r["telegram"].url,
        "CLUSTER_ALERTS_SMTP_HOST": "127.0.0.1",
        "CLUSTER_ALERTS_SMTP_PORT": str(r["smtp"].port),
        "CLUSTER_ALERTS_SMTP_USERNAME": "alerts",
        "CLUSTER_ALERTS_SMTP_PASSWORD": "s3cret",
        "CLUSTER_ALERTS_EMAIL_TO": "oncall@example.test",
        "CLUSTER_ALERTS_SMS_API_BASE": r["sms"].url,
        "CLUSTER_ALERTS_SMS_ACCOUNT_SID": r["sms"].account_sid,
        "CLUSTER_ALERTS_SMS_AUTH_TOKEN": r["sms"].auth_token,
        "CLUSTER_ALERTS_SMS_FROM": "+15550000000",
        "CLUSTER_ALERTS_SMS_TO": "+15550000001",
    }


def received(r: dict[str, Any]) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    """Every channel's messages as (time received, JSON document)."""
    return {
        "webhook": [(a["at"], a["body"]) for a in r["webhook"].accepted],
        "telegram": [(a["at"], {"text": a["body"]["text"]}) for a in r["telegram"].accepted],
        "email": [(m["at"], m["body"]) for m in r["smtp"].messages],
        "sms": [(m["received_at"], {"text": m["body"]}) for m in r["sms"].messages],
    }


def text_of(message: dict[str, Any]) -> str:
    return message["text"]


def test_saturated_host_with_defaults_no_alert_in_the_grace_and_health_stays_200(
        tmp_path: Path, burner: list[subprocess.Popen[bytes]], receivers: dict[str, Any]) -> None:
    env = {**channel_env(receivers), "CLUSTER_MONITORING_METRICS_INTERVAL": "1"}
    cluster = ClusterProcess(tmp_path / "state", env=env)
    try:
        cluster.start()
        started = time.monotonic() - cluster.status()["supervisor"]["uptime"]
        samples = []
        # HTTP only in the loop (a CLI call costs seconds on a saturated host), until the grace
        # (60 s by default) is over; with the defaults nothing can fire before 90 s.
        while (uptime := time.monotonic() - started) < 75:
            status, _, body = http_get(f"{cluster.url}/health")
            metrics = json.loads(http_get(f"{cluster.url}/api/enterprise/metrics")[2])
            alerts = json.loads(http_get(f"{cluster.url}/api/enterprise/alerts")[2])
            cpu = (metrics.get("metrics") or {}).get("cpu", {}).get("value")
            samples.append((uptime, status, json.loads(body), cpu, alerts["active"]))
            time.sleep(0.5)
    finally:
        cluster.close()
    in_grace = [s for s in samples if s[0] < 60]
    assert len(in_grace) >= 3, f"the cluster took {samples[0][0] if samples else '?'} s to start"
    assert all(status == 200 for _, status, _, _, _ in samples), [s[:2] for s in samples]
    assert all(active == [] for *_, active in in_grace)
    assert all(not messages for messages in received(receivers).values())
    # the host was busy, and /health said so in its body without failing
    assert max(cpu or 0 for _, _, _, cpu, _ in samples) >= 90
    report = samples[-1][2]["checks"]["health_score"][0]
    assert report["affectsStatus"] is False and report["host_cpu"]["observedUnit"] == "%"
    logs = [line for line in cluster.logs() if line.get("logger") == "cluster.monitoring.alerts"]
    assert not [line for line in logs if line.get("kind") in ("firing", "repeat")]


def escalation_env(receivers: dict[str, Any]) -> dict[str, str]:
    # many rounds: however slow the restart, the chain is still running when the test acknowledges
    policy = {"critical": {"repeat": 50, "steps": [
        {"channels": ["webhook"], "escalate_after_minutes": STEP_MINUTES},
        {"channels": ["telegram", "email"], "escalate_after_minutes": STEP_MINUTES},
        {"channels": ["sms"], "escalate_after_minutes": STEP_MINUTES},
    ]}}
    return {
        **QUIET, **channel_env(receivers),
        # cpu: critical at once (its escalation); memory, in-flight requests and queue size: warnings,
        # all at the same tick (one grouped message on every channel)
        "CLUSTER_MONITORING_CPU_WARNING": "0", "CLUSTER_MONITORING_CPU_CRITICAL": "0",
        "CLUSTER_MONITORING_MEMORY_WARNING": "0", "CLUSTER_MONITORING_CONCURRENT_USERS_WARNING": "0",
        "CLUSTER_MONITORING_QUEUE_SIZE_WARNING": "0",
        "CLUSTER_MONITORING_STARTUP_GRACE": "0", "CLUSTER_MONITORING_ALERT_FOR": "0",
        "CLUSTER_MONITORING_METRICS_INTERVAL": "0.5", "CLUSTER_ALERTS_GROUP_WAIT": "1",
        "CLUSTER_ALERTS_ESCALATION": json.dumps(policy),
        # the queue tier's Redis (no pools) keeps the escalation across the restart
        **{f"CLUSTER_QUEUES_{p}_WORKERS": "0" for p in ("HIGH", "MEDIUM", "LOW", "BACKGROUND")},
    }


def cpu_texts(r: dict[str, Any], channel: str) -> list[str]:
    return [text_of(m) for _, m in received(r)[channel] if "CRITICAL" in text_of(m) and "cpu" in text_of(m)]


def start(state_dir: Path, env: dict[str, str]) -> ClusterProcess:
    cluster = ClusterProcess(state_dir, env=env, queues=True)
    cluster.env["CLUSTER_ALERTS_ACK_BASE_URL"] = cluster.url
    return cluster.start()


def test_grouped_messages_escalation_across_a_restart_ack_links_and_silences(
        tmp_path: Path, receivers: dict[str, Any]) -> None:
    env = escalation_env(receivers)
    state_dir = tmp_path / "state"
    first = start(state_dir, env)
    try:
        # one message on every channel carries the three warnings together
        for channel in ("webhook", "telegram", "email", "sms"):
            wait_for(lambda c=channel: received(receivers)[c], 90, 0.2, f"the first {channel} message")
        for channel, messages in received(receivers).items():
            text = text_of(messages[0][1]) if channel != "webhook" else messages[0][1]["text"]
            warnings = ("memory", "concurrent_users", "queue_size")
            assert all(f"WARNING: {m} is" in text for m in warnings), (channel, text)
        webhook_first = received(receivers)["webhook"][0][1]
        count = len(webhook_first["alerts"])
        assert count >= 3 and webhook_first["summary"].startswith(f"{count} alerts")
        cpu = next(a["alert"] for _, m in received(receivers)["webhook"] for a in m["alerts"]
                   if a["alert"]["metric"] == "cpu")
        assert cpu["severity"] == "critical" and re.fullmatch(r"[0-9a-f]{32}", cpu["id"])
        # step 2 of the escalation reaches telegram and email; then the supervisor restarts
        wait_for(lambda: any("escalation step 2" in t for t in cpu_texts(receivers, "telegram")), 90, 0.2, "step 2")
        wait_for(lambda: any("escalation step 2" in t for t in cpu_texts(receivers, "email")), 60, 0.2, "step 2 mail")
    finally:
        first.close()

    second = start(state_dir, env)
    try:
        # the escalation resumes where it was (steps missed during the restart come as one message)
        wait_for(lambda: any("escalation step" in t for t in cpu_texts(receivers, "sms")), 90, 0.2, "a step on sms")
        ack = second.cli("alerts", "ack", cpu["id"])
        assert ack.returncode == 0 and f"acknowledged {cpu['id']}" in ack.stdout, ack.stderr
        acked_at = time.time()
        listed = json.loads(second.cli("alerts", "list", "--json").stdout)
        (alert,) = [a for a in listed["active"] if a["id"] == cpu["id"]]
        assert alert["acknowledged_by"] == "cli"
        (esc,) = [e for e in listed["escalations"] if e["alert_id"] == cpu["id"]]
        assert esc["stopped"] == "acknowledged"
        steps = [h["step"] for h in esc["history"]]
        assert steps[:2] == [1, 2] and steps == sorted(set(steps)), steps

        # a signed one-time link acknowledges a warning: the GET is only a confirmation page
        warning = next(a for _, m in received(receivers)["webhook"] for a in m["alerts"]
                       if a["alert"]["metric"] == "memory")
        assert warning["ack_url"].startswith(f"{first.url}/alerts/ack/{warning['alert']['id']}?sig=")
        link = urllib.parse.urlsplit(warning["ack_url"])
        sig = urllib.parse.parse_qs(link.query)["sig"][0]
        page = http_get(f"{second.url}{link.path}?{link.query}")
        assert page[0] == 200 and b"<form method='post'" in page[2]
        assert post_form(f"{second.url}{link.path}", {"sig": "0" * 64}) == 403
        assert post_form(f"{second.url}{link.path}", {"sig": sig}) == 200
        assert post_form(f"{second.url}{link.path}", {"sig": sig}) == 410
        listed = json.loads(second.cli("alerts", "list", "--json").stdout)
        assert [a["acknowledged_by"] for a in listed["active"] if a["id"] == warning["alert"]["id"]] == ["signed link"]

        # silences: set, listed, removed
        made = second.cli("alerts", "silence", "queue_size", "--for", "1h", "--comment", "maintenance")
        assert made.returncode == 0, made.stderr
        silence_id = made.stdout.split()[1].rstrip(":")
        assert "maintenance" in second.cli("alerts", "silences").stdout
        assert second.cli("alerts", "unsilence", silence_id).returncode == 0
        assert json.loads(second.cli("alerts", "list", "--json").stdout)["silences"] == []

        # round 2 would have begun 18 s after the firing: let the monitor pass that point, and more
        def monitor_time() -> float:
            return json.loads(http_get(f"{second.url}/api/enterprise/metrics")[2])["at"]
        wait_for(lambda: monitor_time() > acked_at + 3 * STEP_MINUTES * 60, 120, 0.5, "the monitor to move on")
        listed = json.loads(second.cli("alerts", "list", "--json").stdout)
        assert [[h["step"] for h in e["history"]] for e in listed["escalations"] if e["alert_id"] == cpu["id"]] == [
            steps]
    finally:
        second.close()

    # the whole timeline, as each channel received the cpu alert
    timeline = sorted((at, channel, kind) for channel, messages in received(receivers).items()
                      for at, m in messages for kind in cpu_kinds(m))
    start_at = timeline[0][0]
    lines = [f"+{at - start_at:6.1f}s {channel:8s} {kind}" for at, channel, kind in timeline]
    evidence = Path(os.environ.get("MONITORING_EVIDENCE", tmp_path))
    (evidence / "escalation-timeline.txt").write_text("\n".join(lines) + "\n")
    kinds = [(channel, kind) for _, channel, kind in timeline]
    assert kinds[0] == ("webhook", "firing") and [k for k in kinds if k[1] == "firing"] == [kinds[0]], lines
    assert {("telegram", "escalation step 2"), ("email", "escalation step 2")} <= set(kinds), lines
    assert any(channel == "sms" and kind.startswith("escalation step") for channel, kind in kinds), lines
    # nothing after the acknowledgement: no step beyond the last one it recorded
    assert max(int(kind.rsplit(" ", 1)[1]) for _, kind in kinds if kind.startswith("escalation")) == steps[-1]
    # each step no sooner than its time in the policy (times from the supervisor's own record)
    offsets = [h["at"] - esc["started"] for h in esc["history"]]
    assert all(offset >= (h["step"] - 1) * STEP_MINUTES * 60 for offset, h in zip(offsets, esc["history"])), offsets


def cpu_kinds(message: dict[str, Any]) -> list[str]:
    """The kinds of the cpu critical in one message ('firing', 'escalation step N')."""
    out = []
    for line in text_of(message).splitlines():
        if line.startswith("CRITICAL") and ": cpu is" in line:
            match = re.search(r"\((escalation step \d+|still firing)\)", line)
            out.append(match.group(1) if match else "firing")
    return out


def post_form(url: str, form: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
