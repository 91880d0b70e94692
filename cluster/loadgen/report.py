"""How a report reads: rich tables for people, the live progress bar while it runs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cluster.loadgen.orchestrator import Progress as RunProgress
from cluster.loadgen.stats import ERROR_CLASSES

LATENCY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"


def summary_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"{report['mode']} · {report['url']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    errors = report["errors"]
    table.add_row("requests", f"{report['requests']:,}")
    table.add_row("success", _pct(report["success_pct"]))
    table.add_row("errors", f"{report['error_total']:,}  (" + ", ".join(
        f"{name} {errors.get(name, 0):,}" for name in ERROR_CLASSES) + ")")
    rate = f"{report['rps']:,.1f}" if report["rps"] is not None else "-"
    if report.get("target_rps"):
        rate += f"  (target {report['target_rps']:,.1f})"
    table.add_row("req/s", rate)
    table.add_row("elapsed", f"{report['elapsed_s']:.2f} s on {report['procs']} process(es), {report['users']} users")
    return table


def latency_table(report: dict[str, Any]) -> Table:
    """Percentiles of the merged histogram, in ms."""
    table = Table(title=f"latency ms, from the {report['latency_from']}", title_justify="left")
    for key in LATENCY_KEYS:
        table.add_column(key, justify="right")
    table.add_row(*(_ms(report["latency_ms"][key]) for key in LATENCY_KEYS))
    return table


def steps_table(report: dict[str, Any]) -> Table:
    table = Table(title="stress steps", title_justify="left")
    for name in ("step", "users", "requests", "req/s", "errors", "p50 ms", "p95 ms", "p99 ms", "SLO"):
        table.add_column(name, justify="right")
    breaking = report.get("breaking_point") or {}
    for step in report["steps"]:
        latency = step["latency_ms"]
        verdict = "[red]broken[/red]" if step["step"] == breaking.get("step") else (
            "-" if step["step"] > breaking.get("step", 10**9) else "ok")
        table.add_row(str(step["step"]), str(step["users"]), f"{step['requests']:,}",
                      _ms(step["rps"]), _pct(step["error_pct"]), _ms(latency["p50"]), _ms(latency["p95"]),
                      _ms(latency["p99"]), verdict)
    return table


def breaking_line(report: dict[str, Any]) -> str:
    point = report.get("breaking_point")
    if point is None:
        return "no step broke the SLO: the breaking point is above the last step"
    held = (f"; last step that held: {point['last_good_users']} users at {point['last_good_rps']:,.1f} req/s"
            if point["last_good_users"] is not None else "; the first step already broke it")
    return f"breaking point: step {point['step']} ({point['users']} users): {', '.join(point['reasons'])}{held}"


def print_report(report: dict[str, Any], console: Console) -> None:
    console.print(summary_table(report))
    console.print(latency_table(report))
    if "steps" in report:
        console.print(steps_table(report))
        console.print(breaking_line(report))
    for warning in report["saturation"]["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if report["interrupted"]:
        console.print("[yellow]interrupted: the figures cover the run until Ctrl-C[/yellow]")


class ProgressBar:
    """A rich progress bar on stderr, by time (duration runs) or by requests (``--requests``)."""

    def __init__(self, total_seconds: float | None, total_requests: int | None, console: Console) -> None:
        self.by_time = total_seconds is not None
        self.progress = Progress(
            TextColumn("[bold]bench"), BarColumn(), TextColumn("{task.percentage:>5.1f} %"),
            TextColumn("{task.fields[requests]:>10,} req  {task.fields[rps]:>9,.0f} req/s  "
                       "{task.fields[errors]:,} errors"),
            TimeElapsedColumn(), console=console, transient=True,
        )
        self.task = self.progress.add_task("bench", total=total_seconds if self.by_time else total_requests,
                                           requests=0, rps=0.0, errors=0)

        self.started = False

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def update(self, progress: RunProgress) -> None:
        if not self.started:
            # Started at the first update, after the generator processes are forked: no refresh thread
            # of ours exists when they fork.
            self.progress.start()
            self.started = True
        rps = progress.requests / progress.elapsed if progress.elapsed > 0 else 0.0
        self.progress.update(self.task, completed=progress.elapsed if self.by_time else progress.requests,
                             requests=progress.requests, rps=rps, errors=progress.errors)
