"""`cluster bench URL`: load, stress and endurance runs against any HTTP endpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from cluster.loadgen.mix import (METHODS, Endpoint, MixError, check_url, json_body, load_mix, parse_headers,
                                  with_json_content_type)
from cluster.loadgen.orchestrator import MODES, BenchConfig, BenchError, default_procs, run_bench
from cluster.loadgen.plot import PlotUnavailable, plot_report, require_matplotlib
from cluster.loadgen.report import ProgressBar, print_report
from cluster.loadgen.schedule import stress_steps

EXIT_USAGE = 2


def _endpoints(url: str, method: str, headers: tuple[str, ...], body_file: str | None,
               mix_file: str | None) -> list[Endpoint]:
    base_headers = parse_headers(headers)
    if mix_file:
        return load_mix(Path(mix_file), check_url(url), base_headers)
    body = json_body(Path(body_file)) if body_file else None
    return [Endpoint(method.upper(), check_url(url), with_json_content_type(base_headers) if body else base_headers,
                     body)]


def _config(url: str, opts: dict[str, Any]) -> BenchConfig:
    mode = opts["mode"]
    if opts["requests"] is not None and mode != "load":
        raise click.UsageError("--requests is for --mode load")
    if opts["rps"] is not None and mode != "endurance":
        raise click.UsageError("--rps is for --mode endurance (load and stress are closed-loop)")
    endpoints = _endpoints(url, opts["method"], opts["header"], opts["json_body"], opts["mix"])
    config = BenchConfig(url=url, endpoints=endpoints, mode=mode, users=opts["users"], timeout=opts["timeout"],
                         verify_tls=not opts["insecure"],
                         procs=opts["procs"] or default_procs(), slo_p95_ms=opts["slo_p95"],
                         slo_errors_pct=opts["slo_errors"])
    if mode == "load":
        if opts["requests"] is not None and opts["duration"] is not None:
            raise click.UsageError("give --requests or --duration, not both")
        config.requests = opts["requests"]
        config.duration = None if opts["requests"] is not None else (opts["duration"] or 10.0)
    elif mode == "stress":
        try:
            config.steps = stress_steps(opts["start"], opts["max_users"], opts["step"], opts["step_duration"])
        except ValueError as exc:
            raise click.UsageError(f"stress ramp: {exc}") from None
        if opts["slo_p95"] is None and opts["slo_errors"] is None:
            raise click.UsageError("stress needs an SLO: --slo-p95 MS and/or --slo-errors PCT")
    else:
        if not opts["rps"]:
            raise click.UsageError("endurance needs --rps R (the open-loop rate)")
        config.rps = opts["rps"]
        config.duration = opts["duration"] or 60.0
    return config


@click.command()
@click.argument("url")
@click.option("--mode", type=click.Choice(MODES), default="load", show_default=True)
@click.option("--users", "-c", type=click.IntRange(min=1), default=10, show_default=True,
              help="Concurrent connections (load, endurance).")
@click.option("--requests", "-n", type=click.IntRange(min=1), help="Requests per user (load), instead of --duration.")
@click.option("--duration", "-d", type=click.FloatRange(min=0, min_open=True),
              help="Seconds (load: 10, endurance: 60).")
@click.option("--start", type=click.IntRange(min=1), default=10, show_default=True, help="Stress: first step's users.")
@click.option("--max-users", type=click.IntRange(min=1), default=100, show_default=True,
              help="Stress: last step's users.")
@click.option("--step", type=click.IntRange(min=1), default=10, show_default=True, help="Stress: users added a step.")
@click.option("--step-duration", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Stress: seconds a step.")
@click.option("--slo-p95", type=click.FloatRange(min=0, min_open=True), help="Stress SLO: p95 latency in ms.")
@click.option("--slo-errors", type=click.FloatRange(min=0), help="Stress SLO: error rate in %.")
@click.option("--rps", type=click.FloatRange(min=0, min_open=True), help="Endurance: open-loop requests/s.")
@click.option("--method", "-m", type=click.Choice(sorted(METHODS), case_sensitive=False), default="GET",
              show_default=True)
@click.option("--header", "-H", multiple=True, help="'Name: value'; repeatable.")
@click.option("--json-body", type=click.Path(dir_okay=False), help="Send this JSON file as the body.")
@click.option("--mix", type=click.Path(dir_okay=False),
              help="Weighted endpoints, one a line: WEIGHT METHOD PATH [@BODY.json].")
@click.option("--procs", "-p", type=click.IntRange(min=0), default=0, help="Generator processes [default: cores].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds a request may take.")
@click.option("--insecure", is_flag=True, help="Do not verify the server's TLS certificate.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write latency and throughput over time to FILE.png.")
@click.option("--no-progress", is_flag=True, help="No live progress bar.")
def bench(url: str, as_json: bool, plot: str | None, no_progress: bool, **opts: Any) -> None:
    """Load-test URL: closed-loop load, a stress ramp to the breaking point, or an open-loop endurance run.

    Latencies come from HDR histograms merged over all generator processes;
    endurance latencies count from each request's scheduled send time.
    """
    try:
        config = _config(url, opts)
        if plot:
            require_matplotlib()
    except MixError as exc:
        raise click.UsageError(str(exc)) from None
    except PlotUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    err = Console(stderr=True)
    try:
        if no_progress:
            report = run_bench(config)
        else:
            total_requests = config.requests * config.users if config.requests else None
            with ProgressBar(config.planned_seconds, total_requests, err) as bar:
                report = run_bench(config, bar.update)
    except BenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if plot:
        plot_report(report, Path(plot))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report, Console())
        if plot:
            click.echo(f"plot: {plot}")
