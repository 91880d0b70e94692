"""Prometheus metrics of the queues (multiprocess mode: every pool and worker writes its own file)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LABELS = ("queue",)

ENQUEUED = Counter("cluster_jobs_enqueued_total", "Jobs accepted onto a queue.", LABELS)
PROCESSED = Counter("cluster_jobs_processed_total", "Jobs whose handler returned.", LABELS)
FAILED = Counter("cluster_jobs_failed_total", "Job runs that raised, timed out or returned no JSON.", LABELS)
RETRIED = Counter("cluster_jobs_retried_total", "Failed jobs scheduled to run again.", LABELS)
RERUN = Counter("cluster_jobs_rerun_total", "Jobs put back at once because their consumer died (not attempts).",
                LABELS)
DEAD = Counter("cluster_jobs_dead_total", "Jobs moved to the dead letter stream.", LABELS)
DURATION = Histogram(
    "cluster_job_duration_seconds", "Handler run time.", LABELS,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
)
# Any consumer of a queue may refresh these; the most recent reading wins.
DEPTH = Gauge("cluster_queue_depth", "Ready jobs not yet delivered.", LABELS, multiprocess_mode="mostrecent")
IN_FLIGHT = Gauge("cluster_queue_in_flight", "Delivered, unacknowledged jobs.", LABELS,
                  multiprocess_mode="mostrecent")
DELAYED = Gauge("cluster_queue_delayed", "Jobs waiting for their time (delay or retry backoff).", LABELS,
                multiprocess_mode="mostrecent")
OLDEST_AGE = Gauge("cluster_queue_oldest_age_seconds", "Age of the oldest unacknowledged job.", LABELS,
                   multiprocess_mode="mostrecent")

LOOP_LAG = Gauge("cluster_queue_loop_lag_seconds", "How late the consumer's event loop last ran a 0.1 s timer.",
                 LABELS, multiprocess_mode="livemax")


def set_queue_gauges(priority: str, status: dict[str, object]) -> None:
    DEPTH.labels(priority).set(float(status["depth"]))  # type: ignore[arg-type]
    IN_FLIGHT.labels(priority).set(float(status["in_flight"]))  # type: ignore[arg-type]
    DELAYED.labels(priority).set(float(status["delayed"]))  # type: ignore[arg-type]
    OLDEST_AGE.labels(priority).set(float(status["oldest_age_seconds"] or 0.0))  # type: ignore[arg-type]
