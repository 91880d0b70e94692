"""Backoff, Retry-After, and the dispatcher's isolation of channels (fake channels)."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils

import pytest

from cluster.monitoring import channels as alert_channels
from cluster.monitoring.alerts import AlertBook, Lifecycle, Thresholds
from cluster.monitoring.channels import ChannelError, Dispatcher, Grouper, headline, parse_retry_after, retry_delay
from tests.support import run_async


def test_backoff_doubles_up_to_its_ceiling():
    assert [retry_delay(a, None, 1.0, 8.0) for a in range(1, 7)] == [1, 2, 4, 8, 8, 8]


def test_retry_after_wins_over_backoff_and_is_bounded():
    assert retry_delay(1, 42.0) == 42.0
    assert retry_delay(5, 0.0) == 0.0
    assert retry_delay(1, 10**9) == alert_channels.RETRY_AFTER_MAX


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    when = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(when, now=1_000_000) == pytest.approx(30)


def test_telegram_body_retry_after():
    assert alert_channels._telegram_retry_after('{"ok":false,"parameters":{"retry_after":7}}') == 7.0
    assert alert_channels._telegram_retry_after("not json") is None


QUICK = Lifecycle(for_warning=0, for_critical=0, clear_for=0, grace=0)


def one_note(metric: str = "error_rate"):
    (note,) = AlertBook(QUICK, 0).evaluate(metric, 9.0, Thresholds(1, 5), 0)
    return note


def test_grouper_takes_what_came_within_the_window_of_the_first():
    grouper = Grouper(10.0)
    assert grouper.deadline() is None and grouper.take(0) == []
    notes = [one_note(m) for m in ("cpu", "memory", "error_rate")]
    grouper.add(notes[0], 100.0)
    grouper.add(notes[1], 105.0)
    assert grouper.take(109.9) == []
    assert grouper.deadline() == 110.0
    assert grouper.take(110.0) == notes[:2]
    grouper.add(notes[2], 111.0)
    assert grouper.take(121.0) == notes[2:]


def test_headline_of_one_and_of_several():
    assert headline([one_note()]) == "CRITICAL: error_rate is 9, threshold 5"
    assert headline([one_note("cpu"), one_note("memory")]) == "2 alerts: 2 firing"


class Flaky:
    def __init__(self, name: str, failures: list[ChannelError]) -> None:
        self.name, self.failures, self.received = name, failures, []

    async def send(self, message):
        if self.failures:
            raise self.failures.pop(0)
        self.received.append(message)


class Stuck:
    name = "stuck"

    async def send(self, message):
        await asyncio.Event().wait()


def test_a_429_is_retried_after_its_retry_after_and_a_stuck_channel_blocks_no_one(monkeypatch):
    monkeypatch.setattr(alert_channels, "SEND_TIMEOUT", 0.05)

    async def scenario():
        flaky = Flaky("webhook", [ChannelError("429", retry_after=0.01), ChannelError("429", retry_after=0.01)])
        fine = Flaky("telegram", [])
        dispatcher = Dispatcher([Stuck(), flaky, fine], {"host": "h"})
        dispatcher.start()
        dispatcher.publish(one_note())
        for _ in range(200):
            if flaky.received and fine.received:
                break
            await asyncio.sleep(0.01)
        await dispatcher.stop()
        return flaky, fine, dispatcher

    flaky, fine, dispatcher = run_async(scenario)
    assert len(flaky.received) == 1 and len(fine.received) == 1
    (item,) = flaky.received[0]["alerts"]
    assert item["alert"]["metric"] == "error_rate" and item["kind"] == "firing"
    assert dispatcher.sent["webhook"] == 1 and dispatcher.sent["stuck"] == 0


def test_gives_up_after_max_attempts(monkeypatch):
    monkeypatch.setattr(alert_channels, "MAX_ATTEMPTS", 3)

    async def scenario():
        failing = Flaky("webhook", [ChannelError("500", retry_after=0.0)] * 5)
        dispatcher = Dispatcher([failing], {"host": "h"})
        dispatcher.start()
        dispatcher.publish(one_note())
        for _ in range(200):
            if dispatcher.failed["webhook"]:
                break
            await asyncio.sleep(0.01)
        await dispatcher.stop()
        return failing, dispatcher

    failing, dispatcher = run_async(scenario)
    assert dispatcher.failed["webhook"] == 1
    assert failing.received == [] and len(failing.failures) == 2


def test_a_full_queue_drops_its_oldest(monkeypatch):
    monkeypatch.setattr(alert_channels, "QUEUE_SIZE", 2)
    metrics = ("cpu", "memory", "error_rate", "response_time", "queue_size")

    async def scenario():
        channel = Flaky("webhook", [])
        dispatcher = Dispatcher([channel], {"host": "h"})
        for metric in metrics:
            dispatcher.publish(one_note(metric))
        queued = dispatcher.status()["webhook"]["queued"]
        dispatcher.start()
        for _ in range(300):
            if sum(len(m["alerts"]) for m in channel.received) >= 2:
                break
            await asyncio.sleep(0.01)
        await dispatcher.stop()
        return queued, [item["alert"]["metric"] for m in channel.received for item in m["alerts"]]

    queued, delivered = run_async(scenario)
    assert queued == 2 and delivered == list(metrics[-2:])


def test_five_alerts_within_the_group_window_are_one_message_per_channel():
    async def scenario():
        hook, text = Flaky("webhook", []), Flaky("telegram", [])
        dispatcher = Dispatcher([hook, text], {"host": "h"}, group_wait=0.2)
        dispatcher.start()
        for metric in ("cpu", "memory", "error_rate", "response_time", "queue_size"):
            dispatcher.publish(one_note(metric))
        for _ in range(300):
            if hook.received and text.received:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # nothing else may follow
        await dispatcher.stop()
        return hook, text

    hook, text = run_async(scenario)
    assert len(hook.received) == 1 and len(text.received) == 1
    assert len(hook.received[0]["alerts"]) == 5
    assert hook.received[0]["summary"] == "5 alerts: 5 firing"


def test_a_refusal_is_not_retried():
    async def scenario():
        refusing = Flaky("sms", [ChannelError("400", permanent=True), ChannelError("400", permanent=True)])
        dispatcher = Dispatcher([refusing], {"host": "h"})
        dispatcher.start()
        dispatcher.publish(one_note())
        for _ in range(200):
            if dispatcher.failed["sms"]:
                break
            await asyncio.sleep(0.01)
        await dispatcher.stop()
        return refusing, dispatcher

    refusing, dispatcher = run_async(scenario)
    assert dispatcher.failed["sms"] == 1 and len(refusing.failures) == 1


def test_a_note_goes_only_to_its_channels_and_the_log():
    async def scenario():
        log_channel, hook, sms = Flaky("log", []), Flaky("webhook", []), Flaky("sms", [])
        dispatcher = Dispatcher([log_channel, hook, sms], {"host": "h"})
        dispatcher.publish(dataclasses.replace(one_note(), channels=("sms",)))
        return dispatcher.status()

    status = run_async(scenario)
    assert {name: s["queued"] for name, s in status.items()} == {"log": 1, "webhook": 0, "sms": 1}
