"""`cluster queues ...`: status, enqueue, delayed jobs, dead letter. Talks to Redis directly, with the running cluster's URL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from cluster.cli.common import (EXIT_CONFIG, config_option, control, fail, load_jobs_or_exit, running_settings,
                                state_dir_of, state_dir_option)
from cluster.config import PRIORITIES, Settings

T = TypeVar("T")


def _run(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(client)`` with a queue client; clear errors instead of tracebacks."""
    from cluster.queues.client import QueueClient
    from cluster.queues.connection import UNAVAILABLE_ERRORS, QueueUnavailable

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
    """The job queues: status, enqueue, delayed jobs, dead letter."""


@queues_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@state_dir_option
@config_option
def status(as_json: bool, state_dir: str | None, config_file: str | None) -> None:
    """Per queue: depth, in flight, delayed, counters, oldest job age, consumers."""
    body = _run(running_settings(state_dir, config_file), lambda c: c.status())
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
    from cluster.queues import registry
    from cluster.queues.client import QueueFull

    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except ValueError as exc:
        fail(f"--args/--kwargs must be JSON: {exc}", EXIT_CONFIG)
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        fail("--args must be a JSON list and --kwargs a JSON object", EXIT_CONFIG)
    settings = running_settings(state_dir, config_file)
    load_jobs_or_exit(settings, jobs_module)
    try:
        queued = _run(settings, lambda c: c.enqueue(name, *args, priority=priority, delay=delay, job_id=job_id,
                                                    **kwargs))
    except (registry.UnknownJob, ValueError) as exc:
        fail(str(exc), EXIT_CONFIG)
    except QueueFull as exc:
        fail(str(exc))
    click.echo(json.dumps({"id": queued.id, "queue": queued.priority, "state": queued.state,
                           "created": queued.created}))


DEPRECATED_DEAD_FLAGS = {
    "--requeue JOB_ID": "--retry ENTRY_ID --queue QUEUE (`cluster queues dead` lists each entry's id and queue)",
    "--requeue-all": "--retry-all",
}
"""The dead-letter flags of the former direct-to-Redis set, kept for one minor release, and what replaces them."""


def _deprecated(flag: str) -> None:
    click.echo(f"warning: {flag} is deprecated and will be removed in the next minor release; use "
               f"{DEPRECATED_DEAD_FLAGS[flag]}", err=True)


def _dead_action(state_dir: str | None, config_file: str | None, action: str, params: dict[str, Any]) -> Any:
    """``POST /actions/<action>`` to the supervisor; when none runs (no control socket), the same operation
    (``dashboard.queue_ops``, what the supervisor runs) straight on Redis."""
    from cluster.workers.control_client import socket_path

    if socket_path(state_dir_of(state_dir, config_file)).exists():
        return control(state_dir, config_file, "POST", f"/actions/{action}", params)
    from cluster.dashboard import queue_ops

    operations: dict[str, Callable[[Any], Awaitable[dict[str, Any]]]] = {
        "dead-retry": lambda r: queue_ops.retry_dead(r, params["queue"], [params["entry"]]),
        "dead-delete": lambda r: queue_ops.delete_dead(r, params["queue"], [params["entry"]]),
        "dead-retry-all": lambda r: queue_ops.retry_all_dead(r, params["name"], params["queue"]),
    }
    try:
        return _run(running_settings(state_dir, config_file), lambda c: operations[action](c.redis))
    except queue_ops.QueueOpError as exc:
        fail(str(exc))


@queues_group.command("dead")
@click.option("--queue", type=click.Choice(PRIORITIES), help="Only this queue.")
@click.option("--retry", "retry_entry", metavar="ENTRY_ID", help="Retry one dead entry (by entry id; needs --queue).")
@click.option("--retry-all", is_flag=True, help="Retry every dead job (of --name, of --queue).")
@click.option("--name", help="With --retry-all: only the dead jobs of this job name.")
@click.option("--delete", "delete_entry", metavar="ENTRY_ID", help="Delete one dead entry (needs --queue).")
@click.option("--purge", is_flag=True, help="Delete every dead letter entry (straight on Redis).")
@click.option("--requeue", "requeue_id", metavar="JOB_ID", help="Deprecated: use --retry ENTRY_ID --queue QUEUE.")
@click.option("--requeue-all", is_flag=True, help="Deprecated: use --retry-all.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@state_dir_option
@config_option
def dead(queue: str | None, retry_entry: str | None, retry_all: bool, name: str | None, delete_entry: str | None,
         purge: bool, requeue_id: str | None, requeue_all: bool, limit: int, as_json: bool,
         state_dir: str | None, config_file: str | None) -> None:
    """List the dead letter entries (newest first), or retry / delete / purge them.

    --retry, --retry-all and --delete go through the supervisor's control API,
    as the dashboard's buttons do; when no supervisor runs on the state dir,
    they act on Redis directly. The listing and --purge read and write Redis
    directly. A retried job goes back on its queue with a fresh attempt count;
    an entry whose payload cannot be decoded stays.
    """
    if sum(map(bool, (requeue_id, requeue_all, retry_all, retry_entry, delete_entry, purge))) > 1:
        fail("give at most one of --retry, --retry-all, --delete, --purge", EXIT_CONFIG)
    if name and not retry_all:
        fail("--name goes with --retry-all", EXIT_CONFIG)
    if retry_entry or delete_entry:
        if not queue:
            fail("--retry/--delete need --queue", EXIT_CONFIG)
        action = "dead-retry" if retry_entry else "dead-delete"
        click.echo(json.dumps(_dead_action(state_dir, config_file, action,
                                           {"queue": queue, "entry": retry_entry or delete_entry})))
        return
    if retry_all or requeue_all:
        if requeue_all:
            _deprecated("--requeue-all")
        result = _dead_action(state_dir, config_file, "dead-retry-all", {"name": name, "queue": queue})
        click.echo(f"{'requeued' if requeue_all else 'retried'} {result['retried']}")
        return
    settings = running_settings(state_dir, config_file)
    if requeue_id:
        _deprecated("--requeue JOB_ID")
        moved = sum(_dead_action(state_dir, config_file, "dead-retry", {"queue": p, "entry": entry})["retried"]
                    for p, entry in _run(settings, lambda c: c.dead_entries_of(requeue_id)))
        if not moved:
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
    table = Table("queue", "entry", "job id", "name", "reason", "attempts", "error")
    for entry in entries:
        table.add_row(entry["queue"], entry["entry"], entry.get("job_id") or "-", entry.get("name") or "-",
                      entry.get("reason", ""), entry.get("attempts", ""), (entry.get("error") or "")[:80])
    Console(width=160).print(table)


@queues_group.command("delayed")
@click.option("--queue", type=click.Choice(PRIORITIES), help="Only this queue.")
@click.option("--purge", is_flag=True, help="Delete every delayed job (retries in backoff included).")
@click.option("--limit", type=int, default=50, show_default=True, help="Rows per queue.")
@click.option("--json", "as_json", is_flag=True)
@state_dir_option
@config_option
def delayed(queue: str | None, purge: bool, limit: int, as_json: bool, state_dir: str | None,
            config_file: str | None) -> None:
    """List the delayed jobs, soonest due first, or purge them."""
    from cluster.queues.delayed import delayed_jobs, purge_delayed

    settings = running_settings(state_dir, config_file)
    if purge:
        purged = _run(settings, lambda c: purge_delayed(c.redis, queue))
        click.echo(json.dumps({"purged": purged}) if as_json else
                   "purged " + ", ".join(f"{p}: {n}" for p, n in purged.items()))
        return
    rows = _run(settings, lambda c: delayed_jobs(c.redis, queue, limit))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("queue", "job id", "name", "state", "attempts", "due in")
    now = time.time()
    for row in rows:
        table.add_row(row["queue"], row["id"], row["name"] or "-", row["state"] or "-", str(row["attempts"]),
                      f"{row['due_at'] - now:.0f}s")
    Console(width=160).print(table)


def _pause_command(action: str, help_text: str) -> click.Command:
    @click.argument("queue", type=click.Choice(PRIORITIES))
    @state_dir_option
    @config_option
    def command(queue: str, state_dir: str | None, config_file: str | None) -> None:
        control(state_dir, config_file, "POST", f"/actions/{action}", {"queue": queue})
        click.echo(f"{queue}: {'paused' if action == 'pause' else 'resumed'}")

    command.__doc__ = help_text
    return queues_group.command(action)(command)


_pause_command("pause", "Pause QUEUE: its pools take no new jobs (in-flight ones finish); survives restarts.")
_pause_command("resume", "Resume a paused QUEUE.")


@queues_group.command("run-now")
@click.argument("queue", type=click.Choice(PRIORITIES))
@click.argument("job_id")
@state_dir_option
@config_option
def run_now(queue: str, job_id: str, state_dir: str | None, config_file: str | None) -> None:
    """Make delayed or retrying job JOB_ID of QUEUE due at once."""
    control(state_dir, config_file, "POST", "/actions/run-now", {"queue": queue, "job": job_id})
    click.echo(f"{job_id}: due now")


@queues_group.command("restart")
@click.argument("queue", type=click.Choice(PRIORITIES))
@state_dir_option
@config_option
def restart(queue: str, state_dir: str | None, config_file: str | None) -> None:
    """Restart QUEUE's pool processes (each finishes its jobs in hand; the supervisor starts new ones)."""
    result = control(state_dir, config_file, "POST", "/actions/restart", {"group": f"queue-{queue}"})
    click.echo(f"restarting {', '.join(result['restarted']) or 'nothing'}")
