"""`cluster replicas status`: the read-replica router's view of the database hosts.

By default it asks a running cluster: it reads the effective settings the workers run with
(``<state_dir>/settings.json``) and GETs ``/api/enterprise/replicas/status`` on the first bind
address. Only a worker has the live picture (pool connections in use, queries and errors routed,
hosts taken out by requests), so that is the source of truth; it is one worker's view, and the
worker that answers is named. ``--probe`` checks the hosts from here instead (roles, states and
lag; no pool figures), for when no cluster runs or to cross-check a worker.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
import click
from rich.console import Console
from rich.table import Table

from cluster.cli.common import config_option, fail, load_or_exit, state_dir_option
from cluster.config import state_files
from cluster.config import Settings
from cluster.config.urls import bind_url


class StatusError(Exception):
    pass


def _endpoint(bind: str) -> tuple[str, str | None]:
    """(URL of the status endpoint, unix socket path or None) for a bind address."""
    from cluster.workers.db_routes import STATUS_PATH  # loads psycopg: only when this command runs

    return bind_url(bind, STATUS_PATH)


async def _fetch(url: str, socket: str | None, timeout: float = 5.0) -> dict[str, Any]:
    connector = aiohttp.UnixConnector(path=socket) if socket else None
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise StatusError(f"GET {url}: {response.status} {body}")
                return body
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise StatusError(f"cannot reach the workers at {url}: {exc}") from exc


def from_cluster(state_dir: str) -> dict[str, Any]:
    path = state_files.SETTINGS.path(state_dir)
    if not path.exists():
        raise StatusError(f"no cluster is running with state dir {state_dir} ({path} does not exist); "
                          "start one, or use --probe")
    settings = Settings.model_validate_json(path.read_text())
    url, socket = _endpoint(settings.server.bind[0])
    return asyncio.run(_fetch(url, socket))


def _fmt(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits is not None else str(value)


def render(body: dict[str, Any], console: Console) -> None:
    if not body.get("enabled"):
        console.print(f"replica router off: {body.get('reason', 'no database configured')}")
        return
    source = f"worker pid {body['pid']}" if body.get("pid") else "probed from here"
    console.print(f"strategy {body['strategy']} · fallback {body['fallback']} · writer {body['writer'] or '-'} "
                  f"· {source}")
    if body.get("writes_refused"):
        console.print(f"[red]writes refused: {body['writes_refused']}[/red]")
    if body.get("replicas_unusable"):
        console.print("[yellow]every replica is stale or down: reads go to the fallback[/yellow]")
    table = Table("host", "role", "state", "weight", "lag s", "lag bytes", "in use", "idle", "queries", "errors")
    for host in body["hosts"]:
        conns = host.get("connections") or {}
        table.add_row(host["host"], host["role"], host["state"], str(host["weight"]), _fmt(host["lag_seconds"], 3),
                      _fmt(host["lag_bytes"]), _fmt(conns.get("in_use")), _fmt(conns.get("idle")),
                      _fmt(host["queries"]) if conns else "-", _fmt(host["errors"]) if conns else "-")
    console.print(table)


@click.group()
def replicas() -> None:
    """The PostgreSQL read-replica router."""


@replicas.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.option("--probe", is_flag=True, help="Check the hosts from here instead of asking a running worker.")
@state_dir_option
@config_option
def status(as_json: bool, probe: bool, state_dir: str | None, config_file: str | None) -> None:
    """Per host: role, state, weight, lag (s and bytes), connections in use/idle, queries, errors."""
    settings = load_or_exit(config_file).settings
    try:
        if probe:
            from cluster.db.router import probe_status

            body = asyncio.run(probe_status(settings)) or {
                "enabled": False, "hosts": [], "reason": "no database.url (DATABASE_URL) is configured"}
        else:
            body = from_cluster(state_dir or settings.server.state_dir)
    except StatusError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        render(body, Console(width=None if sys.stdout.isatty() else 160))
