"""The `cluster` command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import psutil
from rich.console import Console
from rich.table import Table

from cluster.cli.autoscale import status_lines
from cluster.cli.bench import bench
from cluster.cli.cache import cache_group
from cluster.cli.monitoring import print_monitoring, top
from cluster.cli.queues import queues_group
from cluster.cli.replicas import replicas
from config import ConfigError, LoadedConfig, effective, load
from observability.metrics import use_multiprocess_dir
from workers import control_client

EXIT_CONFIG = 2
EXIT_RUNTIME = 1
# A reload waits for the supervisor to re-read its config; on a loaded host that is slow.
CONTROL_TIMEOUT = 30.0


def _fail(message: str, code: int = EXIT_RUNTIME) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _load_or_exit(config_file: str | None, overrides: dict[str, Any] | None = None) -> LoadedConfig:
    try:
        return load(config_file=config_file, overrides=overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"config error: {problem}", err=True)
        sys.exit(EXIT_CONFIG)


def _state_dir(state_dir: str | None, config_file: str | None) -> str:
    if state_dir:
        return state_dir
    return _load_or_exit(config_file).settings.server.state_dir


def _call(state_dir: str, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    try:
        return asyncio.run(control_client.call(state_dir, method, path, payload, timeout=CONTROL_TIMEOUT))
    except control_client.ControlError as exc:
        _fail(str(exc))


state_dir_option = click.option("--state-dir", type=click.Path(file_okay=False), help="The supervisor's state dir.")
config_option = click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """cluster: a supervised gunicorn + aiohttp runtime with priority job queues."""


@main.command()
@click.argument("app", required=False)
@click.option("--bind", "-b", multiple=True, help="HOST:PORT or unix:PATH; repeatable.")
@click.option("--workers", "-w", type=int, help="A fixed worker count (min = max = N).")
@click.option("--min-workers", type=int)
@click.option("--max-workers", type=int)
@click.option("--jobs", "jobs_module", help="Module that registers the queue jobs.")
@state_dir_option
@config_option
def start(app: str | None, bind: tuple[str, ...], workers: int | None, min_workers: int | None,
          max_workers: int | None, jobs_module: str | None, state_dir: str | None, config_file: str | None) -> None:
    """Start the supervisor in the foreground (APP is module:app or module:factory())."""
    if workers is not None and (min_workers is not None or max_workers is not None):
        _fail("--workers cannot be combined with --min-workers/--max-workers", EXIT_CONFIG)
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
    loaded = _load_or_exit(config_file, overrides)
    # The supervisor empties this directory before any of its metrics is written.
    use_multiprocess_dir(str(Path(loaded.settings.server.state_dir).resolve() / "metrics"))

    from cluster.supervisor.features import install
    from cluster.supervisor.core import Supervisor, SupervisorError
    from observability.logs import configure

    configure("supervisor", loaded.settings.server.log_level)
    supervisor = Supervisor(loaded, {"config_file": config_file, "overrides": overrides})
    install(supervisor)
    try:
        code = asyncio.run(supervisor.run())
    except SupervisorError as exc:
        _fail(str(exc))
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
    body = _call(_state_dir(state_dir, config_file), "GET", "/status")
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
        _fail("give a worker count, --auto, or --min/--max", EXIT_CONFIG)
    payload = {"workers": workers, "auto": auto, "min": minimum, "max": maximum}
    result = _call(_state_dir(state_dir, config_file), "POST", "/scale", payload)
    click.echo(
        f"workers: target {result['target']} (min {result['min']}, max {result['max']}, {result['mode']})"
    )


@main.command()
@state_dir_option
@config_option
def reload(state_dir: str | None, config_file: str | None) -> None:
    """Re-read the configuration and gracefully replace the workers."""
    result = _call(_state_dir(state_dir, config_file), "POST", "/reload")
    click.echo("reloaded" if result.get("reloaded") else "reload refused")


@main.command()
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the supervisor to exit.")
@state_dir_option
@config_option
def stop(timeout: float | None, state_dir: str | None, config_file: str | None) -> None:
    """Stop gracefully: in-flight requests finish; waits until every process is gone."""
    directory = _state_dir(state_dir, config_file)
    result = _call(directory, "POST", "/stop")
    pid = result["pid"]
    wait = timeout if timeout is not None else 120.0
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            click.echo("stopped")
            return
        time.sleep(0.1)
    _fail(f"supervisor {pid} still running after {wait}s")


@main.group()
def config() -> None:
    """Show or check the configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True)
@config_option
def config_show(as_json: bool, config_file: str | None) -> None:
    """The effective configuration and where each value came from (secrets masked)."""
    loaded = _load_or_exit(config_file)
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
def config_check(file: str | None) -> None:
    """Validate FILE (or the default sources); exit 2 naming each bad key."""
    loaded = _load_or_exit(file)
    where = f"file {loaded.file}" if loaded.file else "defaults and environment"
    click.echo(f"ok: {where}")


main.add_command(top)
main.add_command(replicas)
main.add_command(bench)
main.add_command(queues_group)
main.add_command(cache_group)


def run() -> None:
    """Console-script entry point."""
    main(prog_name=os.path.basename(sys.argv[0]) if sys.argv else "cluster")
