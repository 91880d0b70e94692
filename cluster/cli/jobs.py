"""`cluster jobs show ID` (one job as the dashboard shows it) and `cluster workers recycle PID`."""

from __future__ import annotations

import json

import click

from cluster.cli.common import control


@click.group("jobs")
def jobs_group() -> None:
    """One job of the queues."""


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--state-dir", type=click.Path(file_okay=False), help="The supervisor's state dir.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
def show(job_id: str, state_dir: str | None, config_file: str | None) -> None:
    """Print job JOB_ID as JSON (exit 1 when it is unknown or expired)."""
    click.echo(json.dumps(control(state_dir, config_file, "GET", f"/jobs/{job_id}"), indent=2))


@click.group("workers")
def workers_group() -> None:
    """The HTTP workers."""


@workers_group.command("recycle")
@click.argument("pid", type=int)
@click.option("--state-dir", type=click.Path(file_okay=False), help="The supervisor's state dir.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
def recycle(pid: int, state_dir: str | None, config_file: str | None) -> None:
    """Gracefully replace HTTP worker PID (in-flight requests finish; the arbiter forks a new one)."""
    control(state_dir, config_file, "POST", "/actions/recycle", {"pid": pid})
    click.echo(f"worker {pid}: recycling")
