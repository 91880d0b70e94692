"""`cluster jobs show ID`: one job as the dashboard shows it (state, attempts, args, result or error, request id)."""

from __future__ import annotations

import json

import click

from cluster.cli.control_call import control


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
