"""`cluster queues ...`: status, enqueue, dead letter. Talks to Redis directly, with the running cluster's URL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from cluster.cli.common import EXIT_CONFIG, config_option, fail, load_or_exit, state_dir_option
from config import PRIORITIES, Settings

T = TypeVar("T")


def _settings(state_dir: str | None, config_file: str | None) -> Settings:
    """The running cluster's effective settings (its settings.json carries an embedded Redis URL),
    else the configuration's."""
    loaded = load_or_exit(config_file)
    effective = Path(state_dir or loaded.settings.server.state_dir) / "settings.json"
    if effective.exists():
        return Settings.model_validate_json(effective.read_text())
    return loaded.settings


def _run(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(client)`` with a queue client; clear errors instead of tracebacks."""
    from queues.client import QueueClient
    from queues.connection import UNAVAILABLE_ERRORS, QueueUnavailable

    async def main() -> T:
        client = QueueClient(settings)
        try:
            return await action(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except QueueUnavailable as exc:
        fail(str(exc))
    except UNAVAILABLE_ERRORS as exc:
        fail(f"Redis is unreachable: {exc}")
    raise AssertionError("unreachable")


@click.group("queues")
def queues_group() -> None:
    """The job queues: status, enqueue, dead letter."""


@queues_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@state_dir_option
@config_option
def status(as_json: bool, state_dir: str | None, config_file: str | None) -> None:
    """Per queue: depth, in flight, delayed, counters, oldest job age, consumers."""
    body = _run(_settings(state_dir, config_file), lambda c: c.status())
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    columns = ["depth", "in_flight", "delayed", "processed", "failed", "retried", "dead", "oldest_age_seconds",
               "consumers"]
    table = Table("queue", *columns)
    for priority, row in body.items():
        table.add_row(priority, *("-" if row[c] is None else str(row[c]) for c in columns))
    Console().print(table)


@queues_group.command("enqueue")
@click.argument("name")
@click.option("--priority", type=click.Choice(PRIORITIES), help="Default: the job's own priority.")
@click.option("--args", "args_json", default="[]", help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--delay", type=float, help="Seconds before the job may run.")
@click.option("--job-id", help="Idempotency key: enqueueing an existing id adds nothing.")
@click.option("--jobs", "jobs_module", help="Module that registers the jobs (default: queues.jobs_module).")
@state_dir_option
@config_option
def enqueue(name: str, priority: str | None, args_json: str, kwargs_json: str, delay: float | None,
            job_id: str | None, jobs_module: str | None, state_dir: str | None, config_file: str | None) -> None:
    """Enqueue job NAME."""
    from queues import registry
    from queues.client import QueueFull

    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except ValueError as exc:
        fail(f"--args/--kwargs must be JSON: {exc}", EXIT_CONFIG)
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        fail("--args must be a JSON list and --kwargs a JSON object", EXIT_CONFIG)
    settings = _settings(state_dir, config_file)
    module = jobs_module or settings.queues.jobs_module
    if not module:
        fail("no jobs module: pass --jobs MODULE or set queues.jobs_module", EXIT_CONFIG)
    try:
        registry.load_jobs_module(module)
    except ImportError as exc:
        fail(f"cannot import jobs module {module!r}: {exc}", EXIT_CONFIG)
    try:
        queued = _run(settings, lambda c: c.enqueue(name, *args, priority=priority, delay=delay, job_id=job_id,
                                                    **kwargs))
    except (registry.UnknownJob, ValueError) as exc:
        fail(str(exc), EXIT_CONFIG)
    except QueueFull as exc:
        fail(str(exc))
    click.echo(json.dumps({"id": queued.id, "queue": queued.priority, "state": queued.state,
                           "created": queued.created}))


@queues_group.command("dead")
@click.option("--queue", type=click.Choice(PRIORITIES), help="Only this queue.")
@click.option("--requeue", "requeue_id", metavar="JOB_ID", help="Put this dead job back on its queue.")
@click.option("--requeue-all", is_flag=True, help="Put every dead job back on its queue.")
@click.option("--purge", is_flag=True, help="Delete every dead letter entry.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@state_dir_option
@config_option
def dead(queue: str | None, requeue_id: str | None, requeue_all: bool, purge: bool, limit: int, as_json: bool,
         state_dir: str | None, config_file: str | None) -> None:
    """List the dead letter entries, or requeue / purge them."""
    if sum(map(bool, (requeue_id, requeue_all, purge))) > 1:
        fail("give at most one of --requeue, --requeue-all, --purge", EXIT_CONFIG)
    settings = _settings(state_dir, config_file)
    if requeue_id or requeue_all:
        moved = _run(settings, lambda c: c.requeue_dead(requeue_id))
        if requeue_id and not moved:
            fail(f"no decodable dead job with id {requeue_id!r}")
        click.echo(f"requeued {moved}")
        return
    if purge:
        click.echo(f"purged {_run(settings, lambda c: c.purge_dead())}")
        return
    entries = _run(settings, lambda c: c.dead_entries(queue, limit))
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    table = Table("queue", "job id", "name", "reason", "attempts", "error")
    for entry in entries:
        table.add_row(entry["queue"], entry.get("job_id") or "-", entry.get("name") or "-", entry.get("reason", ""),
                      entry.get("attempts", ""), (entry.get("error") or "")[:80])
    Console(width=160).print(table)
