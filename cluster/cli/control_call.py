"""One control-API call from a CLI command, with the running cluster's state dir and a clear error."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from config import ConfigError, load
from workers import control_client

TIMEOUT = 30.0


def state_dir_of(state_dir: str | None, config_file: str | None) -> str:
    if state_dir:
        return state_dir
    try:
        return load(config_file=config_file).settings.server.state_dir
    except ConfigError as exc:
        click.echo(f"error: {'; '.join(exc.problems)}", err=True)
        sys.exit(2)


def control(state_dir: str | None, config_file: str | None, method: str, path: str,
            payload: dict[str, Any] | None = None) -> Any:
    """The JSON answer of the supervisor's control socket; exits 1 with its error message otherwise."""
    try:
        return asyncio.run(control_client.call(state_dir_of(state_dir, config_file), method, path, payload,
                                               timeout=TIMEOUT))
    except control_client.ControlError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
