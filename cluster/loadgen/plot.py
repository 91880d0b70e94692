"""``--plot FILE.png``: throughput and latency over time (matplotlib, from the `bench` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Fail before a run, not after it, when the plot cannot be drawn."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'cluster[bench]'")


def plot_report(report: dict[str, Any], path: Path) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["timeline"]
    if report.get("duration_s"):
        # The second after the planned end holds only the stragglers in flight at the stop: not a rate.
        rows = [row for row in rows if row["t"] < report["duration_s"]] or rows
    seconds = [row["t"] for row in rows]
    figure, (rate_axis, latency_axis) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    rate_axis.plot(seconds, [row["requests"] for row in rows], label="requests/s")
    rate_axis.plot(seconds, [row["errors"] for row in rows], label="errors/s", color="tab:red")
    if report.get("target_rps"):
        rate_axis.axhline(report["target_rps"], linestyle="--", color="grey", label="target")
    rate_axis.set_ylabel("per second")
    rate_axis.legend(loc="upper left")
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        latency_axis.plot(seconds, [row[key] if row[key] is not None else float("nan") for row in rows], label=label)
    latency_axis.set_ylabel(f"latency ms (from {report['latency_from']})")
    latency_axis.set_xlabel("seconds")
    latency_axis.legend(loc="upper left")
    for step in report.get("steps", [])[1:]:
        boundary = (step["step"] - 1) * report["duration_s"] / len(report["steps"])
        for axis in (rate_axis, latency_axis):
            axis.axvline(boundary, color="lightgrey", linewidth=0.8)
    figure.suptitle(f"cluster bench {report['mode']} · {report['url']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
