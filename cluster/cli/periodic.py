"""`cluster periodic`: the periodic jobs, their last and next tick, and which process leads the scheduling.

Reads Redis directly with the running cluster's URL, as ``cluster queues`` does.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from cluster.cli.common import config_option, fail, load_jobs_or_exit, running_settings, state_dir_option


def _utc(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@click.command("periodic")
@click.option("--json", "as_json", is_flag=True)
@click.option("--jobs", "jobs_module", help="Module that registers the jobs (default: queues.jobs_module).")
@state_dir_option
@config_option
def periodic(as_json: bool, jobs_module: str | None, state_dir: str | None, config_file: str | None) -> None:
    """Each periodic job (cron, last tick enqueued, next tick, in UTC) and the scheduler's leader."""
    from cluster.queues import registry
    from cluster.queues.connection import UNAVAILABLE_ERRORS, async_client
    from cluster.queues.scheduler import status

    settings = running_settings(state_dir, config_file)
    load_jobs_or_exit(settings, jobs_module)
    if not settings.redis.url:
        fail("the queue tier is off: no redis.url (REDIS_URL) and no embedded redis-server")

    async def read() -> dict[str, Any]:
        client = async_client(settings.redis.url or "")
        try:
            return await status(client, registry.schedules(), time.time())
        finally:
            await client.aclose()

    try:
        body = asyncio.run(read())
    except UNAVAILABLE_ERRORS as exc:
        fail(f"Redis is unreachable: {exc}")
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    table = Table("job", "cron", "last tick (UTC)", "next tick (UTC)")
    for row in body["schedules"]:
        table.add_row(row["name"], row["cron"], _utc(row["last_tick"]), _utc(row["next_tick"]))
    Console().print(table)
    click.echo(f"leader: {body['leader'] or 'none (no pool process holds the lease)'}")
