"""The CLI's monitoring views: the health lines of `cluster status` and the live `cluster top`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cluster.cli.common import config_option, fail, state_dir_of, state_dir_option
from cluster.workers import control_client

_STATE_STYLE = {"ok": "green", "warning": "yellow", "critical": "bold red"}
_LEVEL_STYLE = {"excellent": "green", "good": "green", "degraded": "yellow", "critical": "bold red"}
_ARROW = {"rising": "↑", "falling": "↓", "stable": "→"}


def print_monitoring(console: Console, status: dict[str, Any]) -> None:
    """The health score and active alerts from a `/status` body (nothing when no monitor runs)."""
    monitoring = status.get("monitoring")
    if not monitoring:
        return
    health = monitoring.get("health") or {}
    level = health.get("level", "unknown")
    console.print(Text.assemble(
        "health score ", (f"{health.get('score', '-')}", _LEVEL_STYLE.get(level, "")), f" ({level})",
    ))
    alerts = monitoring.get("alerts") or []
    if not alerts:
        console.print("alerts: none active")
        return
    table = Table("alert", "metric", "severity", "state", "value", "threshold", "ack")
    for alert in alerts:
        table.add_row(
            alert["id"], alert["metric"], Text(alert["severity"], _STATE_STYLE.get(alert["severity"], "")),
            alert["state"], _num(alert["value"]), _num(alert["threshold"]), "yes" if alert["acknowledged"] else "",
        )
    console.print(table)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def render(snapshot: dict[str, Any], status: dict[str, Any]) -> Group:
    """One frame of `cluster top`."""
    health = snapshot.get("health", {})
    workers = snapshot.get("workers", {})
    header = Text.assemble(
        ("cluster top", "bold"), "  health ",
        (f"{health.get('score', '-')} {health.get('level', '')}", _LEVEL_STYLE.get(health.get("level"), "")),
        f"  workers {workers.get('current', '-')}/{workers.get('target', '-')} ({workers.get('mode', '-')})",
        f"  {time.strftime('%H:%M:%S')}",
    )
    metrics = Table("metric", "value", "unit", "state", "trend", "warning", "critical")
    for name, m in snapshot.get("metrics", {}).items():
        metrics.add_row(
            name, _num(m["value"]), m["unit"], Text(m["state"], _STATE_STYLE.get(m["state"], "")),
            f"{_ARROW.get(m['trend'], '')} {m['trend']}", _num(m["warning"]), _num(m["critical"]),
        )
    processes = Table("group", "name", "pid", "state", "CPU %", "RSS MiB", "restarts")
    for row in status.get("processes", []):
        rss = row.get("rss_bytes")
        processes.add_row(
            row["group"], row["name"], str(row.get("pid") or "-"), row["state"], _num(row.get("cpu_percent")),
            "-" if rss is None else f"{rss / 1048576:.1f}", str(row.get("restarts") if row.get("restarts") is not None else "-"),
        )
    alerts = Table("alert", "metric", "severity", "state", "value")
    for alert in (status.get("monitoring") or {}).get("alerts", []):
        alerts.add_row(alert["id"], alert["metric"], alert["severity"], alert["state"], _num(alert["value"]))
    return Group(header, metrics, alerts, processes)


async def _read(state_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
    snapshot = await control_client.call(state_dir, "GET", "/monitoring")
    status = await control_client.call(state_dir, "GET", "/status")
    return snapshot, status


@click.command()
@state_dir_option
@config_option
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True, help="Refresh (s).")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
def top(state_dir: str | None, config_file: str | None, interval: float, once: bool) -> None:
    """Live view of the six metrics, the health score, alerts and processes."""
    state_dir = state_dir_of(state_dir, config_file)
    console = Console()
    try:
        if once:
            console.print(render(*asyncio.run(_read(state_dir))))
            return
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            while True:
                live.update(render(*asyncio.run(_read(state_dir))))
                time.sleep(interval)
    except control_client.ControlError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass
