"""Escalation policies: steps at their times, rounds, stop on acknowledgement, state round trip; ack links."""

from __future__ import annotations

from pathlib import Path

from cluster.monitoring import ack_links
from cluster.monitoring.escalation import Escalations, schedule
from cluster.config.settings import EscalationPolicy, EscalationStep

POLICY = EscalationPolicy(steps=[
    EscalationStep(channels=["telegram"], escalate_after_minutes=5),
    EscalationStep(channels=["sms", "email"], escalate_after_minutes=10),
], repeat=2)


def test_schedule_runs_the_steps_in_order_for_every_round():
    assert schedule(POLICY) == [
        (0.0, ("telegram",)), (300.0, ("sms", "email")), (900.0, ("telegram",)), (1200.0, ("sms", "email")),
    ]


def timeline(escalations: Escalations, until: float, every: float = 10.0) -> list[tuple[float, int, tuple[str, ...]]]:
    out = []
    t = 0.0
    while t <= until:
        out += [(t, d.step, d.channels) for d in escalations.due(t)]
        t += every
    return out


def test_steps_come_at_their_times_and_stop_after_the_last_round():
    esc = Escalations({"critical": POLICY})
    assert esc.start("a1", "critical", 0.0) == ("telegram",)
    assert timeline(esc, 3600) == [(300.0, 2, ("sms", "email")), (900.0, 3, ("telegram",)),
                                   (1200.0, 4, ("sms", "email"))]
    assert esc.running["a1"].stopped == "exhausted"
    assert esc.channels_of("a1") == ("telegram", "sms", "email")


def test_acknowledgement_stops_the_chain():
    esc = Escalations({"critical": POLICY})
    esc.start("a1", "critical", 0.0)
    assert timeline(esc, 299) == []
    esc.stop("a1", "acknowledged")
    assert timeline(esc, 3600) == []
    assert esc.running["a1"].stopped == "acknowledged"
    assert esc.channels_of("a1") == ("telegram",)


def test_no_policy_for_the_severity_means_no_escalation():
    esc = Escalations({"critical": POLICY})
    assert esc.start("w1", "warning", 0.0) is None
    assert esc.channels_of("w1") is None


def test_after_a_restart_the_state_continues_and_missed_steps_come_as_one():
    esc = Escalations({"critical": POLICY})
    esc.start("a1", "critical", 0.0)
    again = Escalations({"critical": POLICY})
    again.restore(esc.durable_state())
    assert [(d.step, d.channels) for d in again.due(1000.0)] == [(3, ("sms", "email", "telegram"))]
    assert [h["step"] for h in again.running["a1"].history] == [1, 2, 3]
    assert again.due(1000.0) == []
    assert [(d.step, d.channels) for d in again.due(1200.0)] == [(4, ("sms", "email"))]


def test_forget_drops_escalations_of_inactive_alerts():
    esc = Escalations({"critical": POLICY})
    esc.start("a1", "critical", 0.0)
    esc.start("a2", "critical", 0.0)
    esc.forget({"a2"})
    assert set(esc.running) == {"a2"}


def test_ack_links_are_signed_per_alert_and_the_secret_is_kept(tmp_path: Path):
    secret = ack_links.install_secret(tmp_path, None)
    assert ack_links.install_secret(tmp_path, None) == secret
    assert (tmp_path / ack_links.SECRET_FILE).stat().st_mode & 0o077 == 0
    url = ack_links.link("https://c.example/", secret, "abc")
    assert url.startswith("https://c.example/alerts/ack/abc?sig=")
    sig = url.rsplit("=", 1)[1]
    assert ack_links.verify(secret, "abc", sig)
    assert not ack_links.verify(secret, "abd", sig)
    assert not ack_links.verify(b"other", "abc", sig)
    assert ack_links.install_secret(tmp_path, "configured") == b"configured"
