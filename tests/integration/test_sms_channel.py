"""The SMS channel against a local server that speaks Twilio's Messages API (201, 400, 401, 429)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from cluster.monitoring.alerts import AlertBook, Lifecycle, Thresholds
from cluster.monitoring.channels import Dispatcher, SmsChannel
from cluster.config.settings import AlertSettings
from tests.alert_receivers import TwilioReceiver

pytestmark = pytest.mark.integration
QUICK = Lifecycle(for_warning=0, for_critical=0, clear_for=0, grace=0)


@pytest.fixture
def twilio() -> Iterator[TwilioReceiver]:
    receiver = TwilioReceiver(throttle_first=1).start()
    yield receiver
    receiver.stop()


def settings_for(receiver: TwilioReceiver, **overrides) -> AlertSettings:
    return AlertSettings(**{
        "sms_api_base": receiver.url, "sms_account_sid": receiver.account_sid, "sms_auth_token": receiver.auth_token,
        "sms_from": "+15550000000", "sms_to": ["+15550000001", "+15550000002"], **overrides,
    })


def notes(*metrics: str):
    book = AlertBook(QUICK, 0)
    return [note for m in metrics for note in book.evaluate(m, 99.0, Thresholds(70, 90), 0)]


async def send(settings: AlertSettings, metrics: tuple[str, ...], done) -> Dispatcher:
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher([SmsChannel(session, settings)], {"host": "h"}, group_wait=0.3)
        dispatcher.start()
        for note in notes(*metrics):
            dispatcher.publish(note)
        for _ in range(1000):
            if done(dispatcher):
                break
            await asyncio.sleep(0.01)
        await dispatcher.stop()
        return dispatcher


def test_several_alerts_are_one_text_per_recipient_after_a_429_retry(twilio: TwilioReceiver) -> None:
    dispatcher = asyncio.run(send(settings_for(twilio), ("cpu", "memory", "error_rate"),
                                  lambda d: d.sent["sms"] or d.failed["sms"]))
    assert dispatcher.sent["sms"] == 1
    assert twilio.refused == [(429, 20429)]
    assert sorted(m["to"] for m in twilio.messages) == ["+15550000001", "+15550000002"]
    body = twilio.messages[0]["body"]
    assert body.startswith("3 alerts: 3 firing")
    assert "CRITICAL: cpu is 99" in body and "CRITICAL: memory is 99" in body and "error_rate" in body
    assert twilio.messages[0]["from"] == "+15550000000"


def test_a_wrong_token_is_refused_once_and_not_retried(twilio: TwilioReceiver) -> None:
    dispatcher = asyncio.run(send(settings_for(twilio, sms_auth_token="wrong"), ("cpu",),
                                  lambda d: d.failed["sms"]))
    assert dispatcher.failed["sms"] == 1
    assert twilio.refused == [(401, 20003)] and twilio.messages == []


def test_an_invalid_number_does_not_text_the_valid_one_twice(twilio: TwilioReceiver) -> None:
    twilio._throttle_left = 0
    settings = settings_for(twilio, sms_to=["+15550000001", "12345"])
    dispatcher = asyncio.run(send(settings, ("cpu",), lambda d: d.failed["sms"]))
    assert dispatcher.failed["sms"] == 1
    assert [m["to"] for m in twilio.messages] == ["+15550000001"]
    assert twilio.refused == [(400, 21211)]
