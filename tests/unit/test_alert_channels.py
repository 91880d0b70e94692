"""Backoff, Retry-After, and the dispatcher's isolation of channels (fake channels)."""

from __future__ import annotations

import asyncio
import email.utils

import pytest

from cluster.monitoring import channels as alert_channels
from cluster.monitoring.channels import ChannelError, Dispatcher, parse_retry_after, retry_delay
from cluster.monitoring.alerts import AlertBook, Thresholds


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


def one_note():
    (note,) = AlertBook(0, 300).evaluate("error_rate", 9.0, Thresholds(1, 5), 0)
    return note


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

    flaky, fine, dispatcher = asyncio.run(scenario())
    assert len(flaky.received) == 1 and len(fine.received) == 1
    assert flaky.received[0]["alert"]["metric"] == "error_rate"
    assert flaky.received[0]["kind"] == "firing"
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

    failing, dispatcher = asyncio.run(scenario())
    assert dispatcher.failed["webhook"] == 1
    assert failing.received == [] and len(failing.failures) == 2


def test_a_full_queue_drops_its_oldest(monkeypatch):
    monkeypatch.setattr(alert_channels, "QUEUE_SIZE", 2)

    async def scenario():
        channel = Flaky("webhook", [])
        dispatcher = Dispatcher([channel], {"host": "h"})
        for value in (6.0, 7.0, 8.0, 9.0, 10.0):
            (note,) = AlertBook(0, 300).evaluate("error_rate", value, Thresholds(1, 5), 0)
            dispatcher.publish(note)
        queued = dispatcher.status()["webhook"]["queued"]
        dispatcher.start()
        for _ in range(200):
            if len(channel.received) == 2:
                break
            await asyncio.sleep(0.01)
        await dispatcher.stop()
        return queued, [m["alert"]["value"] for m in channel.received]

    queued, delivered = asyncio.run(scenario())
    assert queued == 2 and delivered == [9.0, 10.0]
