"""What every `cluster` subcommand shares: exit codes, errors, configuration, the state dir, control calls.

Light on purpose (click and the config only): every subcommand module
imports it, and `cluster --help` must stay quick.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, NoReturn

import click

from cluster.config import state_files
from cluster.config import ConfigError, LoadedConfig, Settings, load

EXIT_CONFIG = 2
EXIT_RUNTIME = 1
# A reload waits for the supervisor to re-read its config; on a loaded host that is slow.
CONTROL_TIMEOUT = 30.0

state_dir_option = click.option("--state-dir", type=click.Path(file_okay=False), help="The supervisor's state dir.")
config_option = click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")


def fail(message: str, code: int = EXIT_RUNTIME) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load_or_exit(config_file: str | None, overrides: dict[str, Any] | None = None) -> LoadedConfig:
    """The configuration, or exit 2 with one ``config error:`` line per bad key."""
    try:
        return load(config_file=config_file, overrides=overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"config error: {problem}", err=True)
        sys.exit(EXIT_CONFIG)


def state_dir_of(state_dir: str | None, config_file: str | None) -> str:
    """``--state-dir``, else the configuration's ``server.state_dir``."""
    if state_dir:
        return state_dir
    return load_or_exit(config_file).settings.server.state_dir


def call(state_dir: str, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    """One control-API request to the supervisor of ``state_dir``; exit 1 with its error."""
    from cluster.workers import control_client

    try:
        return asyncio.run(control_client.call(state_dir, method, path, payload, timeout=CONTROL_TIMEOUT))
    except control_client.ControlError as exc:
        fail(str(exc))


def control(state_dir: str | None, config_file: str | None, method: str, path: str,
            payload: dict[str, Any] | None = None) -> Any:
    """``call`` on the supervisor of ``--state-dir`` (else the configuration's state dir)."""
    return call(state_dir_of(state_dir, config_file), method, path, payload)


def running_settings(state_dir: str | None, config_file: str | None) -> Settings:
    """The running cluster's effective settings (its settings.json carries an embedded Redis URL),
    else the configuration's."""
    loaded = load_or_exit(config_file)
    effective = state_files.SETTINGS.path(state_dir or loaded.settings.server.state_dir)
    if effective.exists():
        return Settings.model_validate_json(effective.read_text())
    return loaded.settings


def load_jobs_or_exit(settings: Settings, jobs_module: str | None) -> None:
    """Import the jobs module (``--jobs``, else ``queues.jobs_module``) so its jobs are registered; exit 2
    naming the problem when there is none or it does not import."""
    from cluster.queues import registry  # here: `cluster --help` must not import the queue code

    module = jobs_module or settings.queues.jobs_module
    if not module:
        fail("no jobs module: pass --jobs MODULE or set queues.jobs_module", EXIT_CONFIG)
    try:
        registry.load_jobs_module(module)
    except ImportError as exc:
        fail(f"cannot import jobs module {module!r}: {exc}", EXIT_CONFIG)
