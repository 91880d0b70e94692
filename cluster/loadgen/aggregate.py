"""The report of a run from its processes' results: merged histograms and tallies. Pure, no I/O."""

from __future__ import annotations

from typing import Any

from cluster.loadgen.schedule import LATE_SEND_S, breaking_point
from cluster.loadgen.stats import WINDOW_DIGITS, Tally, latency_ms, merge, summarize

CPU_SATURATED_PCT = 90.0
RATE_SHORTFALL = 0.95  # an open-loop run below 95 % of its target rate did not hold it
LATE_SENDS_PCT = 1.0  # more late sends than this (and at least LATE_SENDS_MIN): the latencies include the
LATE_SENDS_MIN = 10  # generator's own delay; a handful in a short run is scheduling noise, not a verdict


def merge_tallies(dicts: list[dict[str, Any]]) -> Tally:
    total = Tally()
    for data in dicts:
        total.merge(Tally.from_dict(data))
    return total


def timeline(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per second of the run: requests, errors and latency percentiles of the merged second."""
    seconds: dict[int, list[Any]] = {}
    for result in results:
        for second, requests, errors, blob in result["timeline"]:
            entry = seconds.setdefault(second, [0, 0, []])
            entry[0] += requests
            entry[1] += errors
            entry[2].append(blob)
    if not seconds:
        return []
    rows = []
    for second in range(max(seconds) + 1):
        requests, errors, blobs = seconds.get(second, [0, 0, []])
        latency = latency_ms(merge(blobs, WINDOW_DIGITS))
        rows.append({"t": second, "requests": requests, "errors": errors,
                     "p50_ms": latency["p50"], "p99_ms": latency["p99"], "max_ms": latency["max"]})
    return rows


def saturation(results: list[dict[str, Any]], target_rps: float | None, achieved_rps: float | None,
               requests: int = 0) -> dict[str, Any]:
    """Whether the generator, not the server, may have set the figures.

    Signs: a generator process near a full core; in an open-loop run, sends that
    left late although their connection was free (the generator's event loop
    lagged, so latencies include its own delay); a target rate not reached.
    """
    cpu = [round(100.0 * r["cpu_s"] / r["wall_s"], 1) for r in sorted(results, key=lambda r: r["index"])]
    warnings = [f"generator process {i} used {pct} % of a core: the generator may be the bottleneck "
                f"(add --procs)" for i, pct in enumerate(cpu) if pct >= CPU_SATURATED_PCT]
    late = sum(r.get("late_sends", 0) for r in results)
    late_pct = round(100.0 * late / requests, 2) if requests else 0.0
    if late_pct > LATE_SENDS_PCT and late >= LATE_SENDS_MIN:
        warnings.append(f"{late_pct} % of sends left over {LATE_SEND_S * 1000:.0f} ms late on a free connection: "
                        "the generator lagged and its delay is in the latencies (add --procs)")
    if target_rps and (achieved_rps or 0.0) < RATE_SHORTFALL * target_rps:
        cause = ("the generator is saturated" if warnings
                 else "the server answers too slowly for the connections (add --users)")
        warnings.append(f"target rate not reached: {achieved_rps} of {target_rps} req/s; {cause}")
    return {"generator_cpu_pct": cpu, "late_sends": late, "late_sends_pct": late_pct,
            "saturated": bool(warnings), "warnings": warnings}


def build_report(settings: dict[str, Any], results: list[dict[str, Any]], start_at: float,
                 steps: list[dict[str, Any]] | None = None, interrupted: bool = False) -> dict[str, Any]:
    """The whole report: ``settings`` echoed, the run's summary, stress steps, saturation, timeline.

    ``steps`` (stress) gives each phase's ``users`` and planned ``duration``.
    """
    elapsed = max(r["ended"] for r in results) - start_at
    phase_count = len(results[0]["phases"])
    run_tally = merge_tallies([p["tally"] for r in results for p in r["phases"]])
    run_hist = merge(p["hist"] for r in results for p in r["phases"])
    report: dict[str, Any] = {**settings, "interrupted": interrupted, **summarize(run_tally, run_hist, elapsed)}
    report["latency_from"] = "scheduled send time" if settings.get("target_rps") else "actual send time"
    if steps is not None:
        rows = []
        for phase in range(phase_count):
            tally = merge_tallies([r["phases"][phase]["tally"] for r in results])
            hist = merge(r["phases"][phase]["hist"] for r in results)
            rows.append({"step": phase + 1, "users": steps[phase]["users"],
                         **summarize(tally, hist, steps[phase]["duration"])})
        if interrupted:  # the steps Ctrl-C cut off never ran: they neither held nor broke
            rows = [row for row in rows if row["requests"]]
        report["steps"] = rows
        report["breaking_point"] = breaking_point(rows, settings.get("slo_p95_ms"), settings.get("slo_errors_pct"))
    report["saturation"] = saturation(results, settings.get("target_rps"), report["rps"], report["requests"])
    report["timeline"] = timeline(results)
    return report
