"""`cluster alerts`: list alerts, acknowledge one, silence a metric for a while, list and remove silences."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from cluster.cli.common import control

DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '30m', '1h', '2h30m', '1d' (or plain seconds) as seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 30m, 1h or 2h30m")
    return sum(float(n) * UNIT_SECONDS[u] for n, u in parts)


def _when(timestamp: float | None) -> str:
    return "-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


state_dir_option = click.option("--state-dir", type=click.Path(file_okay=False), help="The supervisor's state dir.")
config_option = click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")


@click.group("alerts")
def alerts_group() -> None:
    """Alerts: list, acknowledge, silence."""


@alerts_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@state_dir_option
@config_option
def list_alerts(as_json: bool, state_dir: str | None, config_file: str | None) -> None:
    """Active alerts (with their escalation) and silences."""
    body = control(state_dir, config_file, "GET", "/monitoring/alerts")
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    steps = {e["alert_id"]: e for e in body.get("escalations", [])}
    table = Table("id", "metric", "severity", "state", "value", "threshold", "since", "ack", "escalation")
    for a in body["active"]:
        esc = steps.get(a["id"])
        table.add_row(
            a["id"], a["metric"], a["severity"],
            a["state"] + (" (inhibited)" if a["inhibited"] else "") + (" (silenced)" if a["silenced"] else ""),
            "-" if a["value"] is None else f"{a['value']:.4g}", f"{a['threshold']:g}",
            _when(a["fired_at"] or a["since"]), a["acknowledged_by"] or "",
            "" if esc is None else f"step {esc['next_step']}" + (f", {esc['stopped']}" if esc["stopped"] else ""),
        )
    console.print(table if body["active"] else "no active alerts")
    _print_silences(console, body.get("silences", []))


def _print_silences(console: Console, silences: list[dict[str, Any]]) -> None:
    if not silences:
        console.print("no silences")
        return
    table = Table("silence", "metric", "severity", "until", "by", "comment")
    for s in silences:
        table.add_row(s["id"], s["metric"], s["severity"] or "any", _when(s["ends"]), s["created_by"], s["comment"])
    console.print(table)


@alerts_group.command("ack")
@click.argument("alert_id")
@state_dir_option
@config_option
def ack(alert_id: str, state_dir: str | None, config_file: str | None) -> None:
    """Acknowledge ALERT_ID: no more repeats, its escalation stops."""
    alert = control(state_dir, config_file, "POST", f"/monitoring/alerts/{alert_id}/ack", {"by": "cli"})
    click.echo(f"acknowledged {alert['id']} ({alert['metric']} {alert['severity']})")


@alerts_group.command("silence")
@click.argument("metric")
@click.option("--for", "duration", required=True, help="How long: 90s, 30m, 1h, 2h30m, 1d.")
@click.option("--severity", type=click.Choice(["warning", "critical"]), help="Only this severity (default: both).")
@click.option("--comment", default="", help="Why (shown in the list).")
@state_dir_option
@config_option
def silence(metric: str, duration: str, severity: str | None, comment: str, state_dir: str | None,
            config_file: str | None) -> None:
    """Withhold METRIC's notifications for a while (they still show in `cluster alerts list`)."""
    payload = {"metric": metric, "severity": severity, "duration": parse_duration(duration), "comment": comment,
               "by": "cli"}
    created = control(state_dir, config_file, "POST", "/monitoring/silences", payload)
    click.echo(f"silence {created['id']}: {metric} until {_when(created['ends'])}")


@alerts_group.command("silences")
@state_dir_option
@config_option
def silences(state_dir: str | None, config_file: str | None) -> None:
    """The silences in force."""
    _print_silences(Console(), control(state_dir, config_file, "GET", "/monitoring/silences")["silences"])


@alerts_group.command("unsilence")
@click.argument("silence_id")
@state_dir_option
@config_option
def unsilence(silence_id: str, state_dir: str | None, config_file: str | None) -> None:
    """Remove a silence before it expires."""
    removed = control(state_dir, config_file, "DELETE", f"/monitoring/silences/{silence_id}")
    click.echo(f"removed silence {removed['id']} ({removed['metric']})")
