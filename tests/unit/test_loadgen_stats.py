"""Histogram merge, percentile maths and the counts of a merged report."""

from __future__ import annotations

import random

from cluster.loadgen.aggregate import build_report, saturation
from cluster.loadgen.recorder import Recorder
from cluster.loadgen.stats import Tally, classify_status, latency_ms, merge, new_histogram, record


def _process_result(index: int, latencies_s: list[float], errors: list[str | None], ended: float = 10.0) -> dict:
    recorder = Recorder(origin=0.0)
    for i, (latency, error) in enumerate(zip(latencies_s, errors)):
        recorder.record(latency, error, done=i * 10.0 / len(latencies_s))
    return {"index": index, **recorder.result(), "ended": ended, "cpu_s": 1.0, "wall_s": 10.0}


def test_percentiles_of_a_known_distribution() -> None:
    hist = new_histogram()
    for us in range(1, 10_001):
        record(hist, us)
    latency = latency_ms(hist)
    assert latency["min"] == 0.001
    assert abs(latency["mean"] - 5.0005) < 0.01
    assert abs(latency["p50"] - 5.0) <= 5.0 * 0.001
    assert abs(latency["p90"] - 9.0) <= 9.0 * 0.001
    assert abs(latency["p99"] - 9.9) <= 9.9 * 0.001
    assert abs(latency["p99.9"] - 9.99) <= 9.99 * 0.001
    assert abs(latency["max"] - 10.0) <= 10.0 * 0.001


def test_empty_histogram_has_no_latency() -> None:
    assert set(latency_ms(new_histogram()).values()) == {None}


def test_values_out_of_range_are_clamped_not_lost() -> None:
    hist = new_histogram()
    record(hist, 0)
    record(hist, 10**12)
    assert hist.get_total_count() == 2


def test_merge_equals_one_histogram_of_every_value() -> None:
    rng = random.Random(7)
    parts = [[rng.randint(1, 2_000_000) for _ in range(5000)] for _ in range(3)]
    single = new_histogram()
    blobs = []
    for values in parts:
        part = new_histogram()
        for value in values:
            record(part, value)
            record(single, value)
        blobs.append(part.encode())
    merged = merge(blobs)
    assert merged.get_total_count() == 15_000
    assert latency_ms(merged) == latency_ms(single)


def test_report_percentiles_come_from_the_merged_histogram_not_an_average() -> None:
    # One fast process and one whose 4 % of requests take a second: 2 % of the run.
    fast = _process_result(0, [0.001] * 1000, [None] * 1000)
    slow = _process_result(1, [0.001] * 960 + [1.0] * 40, [None] * 1000)
    report = build_report({"url": "http://x", "mode": "load"}, [fast, slow], start_at=0.0)
    per_process_p99 = [latency_ms(merge(p["hist"] for p in r["phases"]))["p99"] for r in (fast, slow)]
    assert per_process_p99[0] == 1.0 and abs(per_process_p99[1] - 1000.0) <= 1.0
    # The merged p99 is the slow tail, not the ~500 ms an average of the two p99s would claim.
    assert abs(report["latency_ms"]["p99"] - 1000.0) <= 1.0
    assert report["latency_ms"]["p95"] == 1.0


def test_report_counts_add_up_and_errors_are_classified() -> None:
    errors = [None] * 90 + ["4xx"] * 5 + ["5xx"] * 3 + ["timeout"] + ["connect"]
    latencies = [0.002] * 99 + [None]
    report = build_report({"url": "http://x", "mode": "load"},
                          [_process_result(0, latencies, errors), _process_result(1, latencies, errors)], 0.0)
    assert report["requests"] == 200 == report["successes"] + report["error_total"]
    assert report["errors"] == {"connect": 2, "timeout": 2, "4xx": 10, "5xx": 6, "other": 0}
    assert report["success_pct"] == 90.0
    assert report["rps"] == 20.0
    assert sum(row["requests"] for row in report["timeline"]) == 200
    assert sum(row["errors"] for row in report["timeline"]) == 20


def test_status_classes() -> None:
    assert [classify_status(s) for s in (200, 204, 301, 404, 429, 500, 503)] == [
        None, None, None, "4xx", "4xx", "5xx", "5xx"]


def test_tally_round_trip_and_merge() -> None:
    tally = Tally()
    for error in (None, None, "5xx", "timeout"):
        tally.add(error)
    again = Tally.from_dict(tally.to_dict())
    again.merge(tally)
    assert again.requests == 8 and again.successes == 4 and again.errors["5xx"] == 2


def test_saturation_flags_generator_cpu_and_missed_rate() -> None:
    busy = {"index": 0, "cpu_s": 9.8, "wall_s": 10.0}
    idle = {"index": 1, "cpu_s": 1.0, "wall_s": 10.0}
    assert not saturation([idle], None, None)["saturated"]
    flagged = saturation([busy, idle], None, None)
    assert flagged["saturated"] and "process 0" in flagged["warnings"][0]
    missed = saturation([idle], target_rps=1000.0, achieved_rps=800.0)
    assert missed["saturated"] and "target rate not reached" in missed["warnings"][0]
    assert not saturation([idle], target_rps=1000.0, achieved_rps=990.0)["saturated"]
    lagging = saturation([{**idle, "late_sends": 30}], target_rps=1000.0, achieved_rps=1000.0, requests=1000)
    assert lagging["saturated"] and lagging["late_sends_pct"] == 3.0 and "generator lagged" in lagging["warnings"][0]
    assert not saturation([{**idle, "late_sends": 5}], 1000.0, 1000.0, requests=1000)["saturated"]


def test_timeline_fills_silent_seconds_and_merges_processes_per_second() -> None:
    first, second = Recorder(origin=100.0), Recorder(origin=100.0)
    first.record(0.010, None, done=100.2)
    first.record(0.020, "5xx", done=103.5)  # nothing finished in seconds 1 and 2: a stall
    second.record(0.030, None, done=100.7)
    results = [{"index": i, **r.result(), "ended": 104.0, "cpu_s": 0.1, "wall_s": 4.0}
               for i, r in enumerate((first, second))]
    rows = build_report({"url": "http://x", "mode": "load"}, results, start_at=100.0)["timeline"]
    assert [(row["t"], row["requests"], row["errors"]) for row in rows] == [(0, 2, 0), (1, 0, 0), (2, 0, 0), (3, 1, 1)]
    assert rows[1]["p99_ms"] is None
    assert abs(rows[0]["max_ms"] - 30.0) <= 0.3 and abs(rows[3]["p50_ms"] - 20.0) <= 0.2
