"""The `cluster` command."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import psutil
from rich.console import Console
from rich.table import Table

from cluster.cli.common import EXIT_CONFIG, call, config_option, fail, load_or_exit, state_dir_of, state_dir_option
from cluster.cli.lazy import LazyGroup
from cluster.config import LoadedConfig, effective


def _preflight_or_exit(loaded: LoadedConfig) -> list[str]:
    """Fail at once, one line a problem, when the start cannot succeed (nothing is left running).

    Returns the warnings (built-in routes the app shadows).
    """
    from cluster.supervisor import preflight

    report = preflight.run(loaded.settings)
    for line in report.lines:
        click.echo(f"error: {line}", err=True)
    if report.exit_code:
        sys.exit(report.exit_code)
    return report.warnings


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, lazy_subcommands={
    "top": ("cluster.cli.monitoring", "top", "Live view of the six metrics, the health score, alerts and processes."),
    "replicas": ("cluster.cli.replicas", "replicas", "The PostgreSQL read-replica router."),
    "bench": ("cluster.cli.bench", "bench", "Load-test URL: closed-loop load, a stress ramp, or an open-loop endurance run."),
    "queues": ("cluster.cli.queues", "queues_group", "The job queues: status, enqueue, dead letter, pause."),
    "periodic": ("cluster.cli.periodic", "periodic", "Periodic jobs: cron, last and next tick, the leader."),
    "alerts": ("cluster.cli.alerts", "alerts_group", "Alerts: list, acknowledge, silence."),
    "jobs": ("cluster.cli.jobs", "jobs_group", "One job by id."),
    "workers": ("cluster.cli.jobs", "workers_group", "HTTP workers: recycle one."),
    "systemd": ("cluster.cli.systemd", "systemd_group", "systemd units for this install: print or install them."),
    "cache": ("cluster.cli.cache", "cache_group", "The Redis cache: status, clear by tag or pattern."),
})
@click.version_option(package_name="cluster", prog_name="cluster")
def main() -> None:
    """cluster: a supervised gunicorn + aiohttp runtime with priority job queues."""


@main.command()
@click.argument("app", required=False)
@click.option("--bind", "-b", multiple=True, help="HOST:PORT or unix:PATH; repeatable.")
@click.option("--workers", "-w", type=int, help="A fixed worker count (min = max = N).")
@click.option("--min-workers", type=int)
@click.option("--max-workers", type=int)
@click.option("--jobs", "jobs_module", help="Module that registers the queue jobs.")
@click.option("--log-format", type=click.Choice(["auto", "json", "text"]), help="auto: text on a terminal.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Log to this file (reopened on SIGUSR1).")
@state_dir_option
@config_option
def start(app: str | None, bind: tuple[str, ...], workers: int | None, min_workers: int | None,
          max_workers: int | None, jobs_module: str | None, log_format: str | None, log_file: str | None,
          state_dir: str | None, config_file: str | None) -> None:
    """Start the supervisor in the foreground (APP is module:app or module:factory())."""
    if workers is not None and (min_workers is not None or max_workers is not None):
        fail("--workers cannot be combined with --min-workers/--max-workers", EXIT_CONFIG)
    overrides: dict[str, Any] = {}
    if app:
        overrides["server.app"] = app
    if bind:
        overrides["server.bind"] = list(bind)
    if workers is not None:
        overrides["workers.min"] = overrides["workers.max"] = workers
    if min_workers is not None:
        overrides["workers.min"] = min_workers
    if max_workers is not None:
        overrides["workers.max"] = max_workers
    if jobs_module:
        overrides["queues.jobs_module"] = jobs_module
    if state_dir:
        overrides["server.state_dir"] = state_dir
    if log_format:
        overrides["logging.format"] = log_format
    if log_file:
        overrides["logging.file"] = str(Path(log_file).absolute())
    loaded = load_or_exit(config_file, overrides)
    from cluster.config import mask_text
    from cluster.observability.logs import configure, redact_with

    logs = loaded.settings.logging
    configure("supervisor", loaded.settings.server.log_level, logs.format, logs.file)
    # The webhook URL is a secret as a whole: nothing logged shows more than its host.
    redact_with(functools.partial(mask_text, whole=(loaded.settings.alerts.webhook_url,)))
    warnings = _preflight_or_exit(loaded)  # after the logs are set up: building the app says so
    from cluster.observability.multiproc import use_multiprocess_dir

    # The supervisor empties this directory before any of its metrics is written.
    use_multiprocess_dir(str(Path(loaded.settings.server.state_dir).resolve() / "metrics"))  # preflight refused a link

    from cluster.cli.features import install
    from cluster.supervisor.core import Supervisor, SupervisorError
    from cluster.supervisor.state_dir import StateDirError

    for line in warnings:
        logging.getLogger("cluster.supervisor.preflight").warning(line)
    supervisor = Supervisor(loaded, {"config_file": config_file, "overrides": overrides})
    install(supervisor)
    try:
        code = asyncio.run(supervisor.run())
    except SupervisorError as exc:
        fail(str(exc))
    except StateDirError as exc:
        fail(str(exc), EXIT_CONFIG)
    if supervisor.failure:
        fail(supervisor.failure, code)
    sys.exit(code)


def _console() -> Console:
    """A console that does not squeeze tables to 80 columns when piped."""
    return Console(width=None if sys.stdout.isatty() else 200)


def _fmt_bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / (1024 * 1024):.1f} MiB"


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@state_dir_option
@config_option
def status(as_json: bool, state_dir: str | None, config_file: str | None) -> None:
    """Show the supervisor's processes and state."""
    from cluster.cli.autoscale import status_lines
    from cluster.cli.monitoring import print_monitoring

    body = call(state_dir_of(state_dir, config_file), "GET", "/status")
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    console = _console()
    sup, workers = body["supervisor"], body["workers"]
    console.print(
        f"supervisor pid {sup['pid']} up {sup['uptime']}s · bind {', '.join(sup['bind'])} · "
        f"workers {workers['current']}/{workers['target']} (min {workers['min']}, max {workers['max']}, "
        f"{workers['mode']})"
    )
    for line in status_lines(body):
        console.print(line, markup=False, highlight=False)
    table = Table("group", "name", "pid", "state", "uptime", "CPU %", "RSS", "restarts")
    for row in body["processes"]:
        table.add_row(
            row["group"], row["name"], _fmt(row["pid"]), row["state"], _fmt(row["uptime"], "s"),
            _fmt(row.get("cpu_percent")), _fmt_bytes(row.get("rss_bytes")), _fmt(row.get("restarts")),
        )
    console.print(table)
    print_monitoring(console, body)


@main.command()
@click.argument("workers", type=int, required=False)
@click.option("--auto", is_flag=True, help="Return to autoscaling.")
@click.option("--min", "minimum", type=int, help="New lower bound.")
@click.option("--max", "maximum", type=int, help="New upper bound.")
@state_dir_option
@config_option
def scale(workers: int | None, auto: bool, minimum: int | None, maximum: int | None,
          state_dir: str | None, config_file: str | None) -> None:
    """Pin the HTTP worker count (manual), go back to --auto, or move the bounds."""
    if workers is None and not auto and minimum is None and maximum is None:
        fail("give a worker count, --auto, or --min/--max", EXIT_CONFIG)
    payload = {"workers": workers, "auto": auto, "min": minimum, "max": maximum}
    result = call(state_dir_of(state_dir, config_file), "POST", "/scale", payload)
    click.echo(
        f"workers: target {result['target']} (min {result['min']}, max {result['max']}, {result['mode']})"
    )


@main.command()
@state_dir_option
@config_option
def reload(state_dir: str | None, config_file: str | None) -> None:
    """Re-read the configuration and gracefully replace the workers."""
    result = call(state_dir_of(state_dir, config_file), "POST", "/reload")
    click.echo("reloaded" if result.get("reloaded") else "reload refused")


@main.command()
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the supervisor to exit.")
@state_dir_option
@config_option
def stop(timeout: float | None, state_dir: str | None, config_file: str | None) -> None:
    """Stop gracefully: in-flight requests finish; waits until every process is gone."""
    directory = state_dir_of(state_dir, config_file)
    result = call(directory, "POST", "/stop")
    pid = result["pid"]
    wait = timeout if timeout is not None else 120.0
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            click.echo("stopped")
            return
        time.sleep(0.1)
    fail(f"supervisor {pid} still running after {wait}s")


@main.group()
def config() -> None:
    """Show or check the configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True)
@config_option
def config_show(as_json: bool, config_file: str | None) -> None:
    """The effective configuration and where each value came from (secrets masked)."""
    loaded = load_or_exit(config_file)
    rows = effective(loaded)
    if as_json:
        click.echo(json.dumps({key: {"value": value, "source": source} for key, value, source in rows}, indent=2))
        return
    table = Table("key", "value", "source")
    for key, value, source in rows:
        table.add_row(key, json.dumps(value), source)
    _console().print(table)


@config.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--app", "app", is_flag=False, flag_value="", default=None,
              help="Also run start's checks: binds, state dir, and build APP (default: server.app).")
@click.option("--jobs", "jobs_module", help="The jobs module to import (with --app).")
def config_check(file: str | None, app: str | None, jobs_module: str | None) -> None:
    """Validate FILE (or the default sources); exit 2 naming each bad key, 1 for a start that would fail."""
    overrides: dict[str, Any] = {}
    if app:
        overrides["server.app"] = app
    if jobs_module:
        overrides["queues.jobs_module"] = jobs_module
    loaded = load_or_exit(file, overrides)
    if app is not None or jobs_module:
        for line in _preflight_or_exit(loaded):
            click.echo(f"warning: {line}", err=True)
    else:
        from cluster.supervisor import preflight

        # The checks start runs that change nothing: the two never disagree on a setting.
        problems = preflight.config_problems(loaded.settings)
        for line in problems:
            click.echo(f"error: {line}", err=True)
        if problems:
            sys.exit(EXIT_CONFIG)
    where = f"file {loaded.file}" if loaded.file else "defaults and environment"
    click.echo(f"ok: {where}")


def run() -> None:
    """Console-script entry point."""
    main(prog_name=os.path.basename(sys.argv[0]) if sys.argv else "cluster")
