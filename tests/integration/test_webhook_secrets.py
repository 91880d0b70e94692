"""A webhook URL is a secret as a whole (issue 24, finding 8): `config show`, config errors and a channel's
logged error show its scheme and host only, whatever the receiver echoes back in its error body."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from aiohttp import web

from cluster.monitoring.alerts import AlertBook, Lifecycle, Thresholds
from cluster.monitoring.channels import Dispatcher, WebhookChannel
from tests.support import run_async, run_cli

pytestmark = pytest.mark.integration
SECRETS = ("T0SECRET1", "B0SECRET2", "XoXoSecretPart3", "AzureCode4")
URLS = (
    "https://hooks.slack.com/services/T0SECRET1/B0SECRET2/XoXoSecretPart3",
    "https://fn.azurewebsites.net/api/alert?code=AzureCode4",
)
QUICK = Lifecycle(for_warning=0, for_critical=0, clear_for=0, grace=0)


@pytest.mark.parametrize("url", URLS)
def test_config_show_gives_a_webhook_url_as_scheme_and_host_only(url: str) -> None:
    shown = run_cli("config", "show", "--json", env={"CLUSTER_ALERTS_WEBHOOK_URL": url})
    assert shown.returncode == 0, shown.stderr
    value = json.loads(shown.stdout)["alerts.webhook_url"]["value"]
    assert value == url.split("/")[0] + "//" + url.split("/")[2] + "/****"
    table = run_cli("config", "show", env={"CLUSTER_ALERTS_WEBHOOK_URL": url})
    assert not any(secret in shown.stdout + table.stdout for secret in SECRETS)


def test_a_config_error_beside_a_webhook_url_does_not_show_it() -> None:
    checked = run_cli("config", "check", env={"CLUSTER_ALERTS_WEBHOOK_URL": URLS[0] + ":notaport",
                                              "CLUSTER_ALERTS_WEBHOOK_HEADERS": '{"X-Token": "a\\r\\nX-Evil: 1"}'})
    assert checked.returncode == 2
    assert not any(secret in checked.stdout + checked.stderr for secret in SECRETS)


def test_a_channel_error_body_echoing_the_url_is_logged_masked(caplog: pytest.LogCaptureFixture) -> None:
    async def echo(request: web.Request) -> web.Response:
        # As some receivers do: the refusal names what was asked for.
        return web.Response(status=404, text=f"no_service: {request.url} (path {request.path_qs})")

    async def scenario() -> dict[str, int]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        failed = {}
        async with aiohttp.ClientSession() as session:
            for secret_url in (f"http://127.0.0.1:{port}/services/T0SECRET1/B0SECRET2/XoXoSecretPart3",
                               f"http://127.0.0.1:{port}/api/alert?code=AzureCode4"):
                dispatcher = Dispatcher([WebhookChannel(session, secret_url, {})], {"host": "h"})
                dispatcher.start()
                (note,) = AlertBook(QUICK, 0).evaluate("error_rate", 9.0, Thresholds(1, 5), 0)
                dispatcher.publish(note)
                while not dispatcher.failed["webhook"]:
                    await asyncio.sleep(0.01)
                await dispatcher.stop()
                failed[secret_url] = dispatcher.failed["webhook"]
        await runner.cleanup()
        return failed

    with caplog.at_level(logging.INFO, logger="cluster.monitoring.alerts"):
        failed = run_async(scenario)
    assert list(failed.values()) == [1, 1]  # each receiver refused once, for good (404)
    refusals = [r.getMessage() for r in caplog.records if "refused a notification" in r.getMessage()]
    assert len(refusals) == 2 and all("404" in line and "127.0.0.1" in line for line in refusals), refusals
    logged = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert not any(secret in logged for secret in SECRETS), logged
