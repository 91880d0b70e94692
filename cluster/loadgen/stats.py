"""Latency histograms, outcome tallies and their merge: pure functions, no I/O.

Latencies are recorded in microseconds into HdrHistograms. Processes ship
their histograms encoded (HdrHistogram V2 "histoblobs") and the orchestrator
adds them up, so every percentile is read from the merged distribution: a
percentile of the whole run, never an average of per-process percentiles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: a latency above that is clamped, not lost
RUN_DIGITS = 3  # 0.1 % precision for the run and each stress step
WINDOW_DIGITS = 2  # 1 % for the per-second timeline: 8x smaller, plenty for a plot
ERROR_CLASSES = ("connect", "timeout", "4xx", "5xx", "other")
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9))


def new_histogram(digits: int = RUN_DIGITS) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def record(hist: HdrHistogram, latency_us: int) -> None:
    """Record one latency, clamped into the trackable range."""
    hist.record_value(min(max(latency_us, LOWEST_US), HIGHEST_US))


def merge(encoded: Iterable[bytes | str], digits: int = RUN_DIGITS) -> HdrHistogram:
    """One histogram holding every value of the encoded histograms."""
    total = new_histogram(digits)
    for blob in encoded:
        if blob:
            total.decode_and_add(blob.encode() if isinstance(blob, str) else blob)
    return total


def latency_ms(hist: HdrHistogram) -> dict[str, float | None]:
    """min, mean, p50 ... p99.9, max in milliseconds (None when nothing was recorded)."""
    keys = ["min", "mean", *(name for name, _ in PERCENTILES), "max"]
    if hist.get_total_count() == 0:
        return dict.fromkeys(keys, None)
    values = {"min": hist.get_min_value(), "mean": hist.get_mean_value()}
    values.update({name: hist.get_value_at_percentile(p) for name, p in PERCENTILES})
    values["max"] = hist.get_max_value()
    return {key: round(values[key] / 1000.0, 3) for key in keys}


def classify_status(status: int) -> str | None:
    """The error class of an HTTP status, None for a success (1xx-3xx)."""
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    return None


@dataclass
class Tally:
    """Outcome counts: every request is exactly one success or one error."""

    successes: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_CLASSES, 0))

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    @property
    def requests(self) -> int:
        return self.successes + self.error_total

    def add(self, error: str | None) -> None:
        if error is None:
            self.successes += 1
        else:
            self.errors[error] += 1

    def merge(self, other: "Tally") -> None:
        self.successes += other.successes
        for key, count in other.errors.items():
            self.errors[key] = self.errors.get(key, 0) + count

    def to_dict(self) -> dict[str, Any]:
        return {"successes": self.successes, "errors": dict(self.errors)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tally":
        return cls(successes=data["successes"], errors={**dict.fromkeys(ERROR_CLASSES, 0), **data["errors"]})


def summarize(tally: Tally, hist: HdrHistogram, elapsed_s: float) -> dict[str, Any]:
    """The figures of one run or step: counts, success %, errors by class, req/s, latency."""
    requests = tally.requests
    return {
        "requests": requests,
        "successes": tally.successes,
        "error_total": tally.error_total,
        "errors": dict(tally.errors),
        "success_pct": round(100.0 * tally.successes / requests, 3) if requests else None,
        "error_pct": round(100.0 * tally.error_total / requests, 3) if requests else None,
        "elapsed_s": round(elapsed_s, 3),
        "rps": round(requests / elapsed_s, 1) if elapsed_s > 0 else None,
        "latency_ms": latency_ms(hist),
    }
