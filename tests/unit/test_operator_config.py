"""The operators' Prometheus rules equal the built-in thresholds; the dashboard uses known metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cluster.monitoring.monitor import METRICS
from cluster.config.settings import MonitoringSettings

ROOT = Path(__file__).resolve().parents[2]
# Every metric name the processes or the supervisor expose (the brief's contract plus ours).
KNOWN = {
    "http_requests_total", "http_request_duration_seconds_bucket", "http_requests_in_flight",
    "cluster_workers", "cluster_workers_target", "cluster_autoscale_events_total", "cluster_child_restarts_total",
    "cluster_queue_depth", "cluster_jobs_processed_total", "cluster_jobs_failed_total",
    "cluster_db_replica_lag_seconds", "cluster_db_queries_total", "cluster_health_score",
    "cluster_host_cpu_percent", "cluster_host_memory_percent", "cluster_process_cpu_percent",
    "cluster_process_resident_memory_bytes",
    "cluster_jobs_dead_total", "cluster_queue_oldest_age_seconds", "cluster_job_duration_seconds_bucket",
}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "route", "le", "instance", "status",
                "queue", "role", "max"}


def test_prometheus_rules_match_the_builtin_thresholds():
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    defaults = MonitoringSettings()
    seen = set()
    for rule in rules:
        metric, severity = rule["alert"], rule["labels"]["severity"]
        threshold = float(re.search(r">=\s*([0-9.]+)\s*$", rule["expr"]).group(1))
        assert threshold == getattr(defaults, f"{metric}_{severity}"), rule["alert"]
        assert "[1m]" in rule["expr"] or "rate" not in rule["expr"]  # the built-in 60 s window
        assert prom_seconds(rule["for"]) == getattr(defaults, f"alert_for_{severity}"), rule["alert"]
        seen.add((metric, severity))
    assert seen == {(m, s) for m in METRICS for s in ("warning", "critical")}
    assert defaults.window == 60


def prom_seconds(duration: str) -> float:
    """A Prometheus duration ('1m', '30s', '1m30s') in seconds."""
    return sum(float(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def test_dashboard_queries_only_known_metrics():
    dashboard = json.loads((ROOT / "deploy/grafana/cluster.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        bare = re.sub(r'"[^"]*"|\[\d+[smh]\]', "", expr)
        names = set(re.findall(r"[a-z_][a-z0-9_]*", bare)) - PROMQL_WORDS
        assert names <= KNOWN, (expr, names - KNOWN)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus) is not installed")
def test_promtool_checks_and_tests_the_rules():
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(["promtool", *args], cwd=ROOT / "deploy/prometheus", capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
