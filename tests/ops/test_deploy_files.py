"""The files in deploy/ are valid for the engines that read them (each check skips when its tool is absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)


def _needs(tool: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed")


@_needs("promtool")
def test_ops_alert_rules_check_and_their_tests_pass() -> None:
    check = _run("promtool", "check", "rules", "ops-alerts.yml", cwd=DEPLOY / "prometheus")
    assert check.returncode == 0, check.stdout + check.stderr
    test = _run("promtool", "test", "rules", "ops-alerts_test.yml", cwd=DEPLOY / "prometheus")
    assert test.returncode == 0, test.stdout + test.stderr


@_needs("promtool")
def test_builtin_alert_rules_tests_pass() -> None:
    test = _run("promtool", "test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")
    assert test.returncode == 0, test.stdout + test.stderr


def test_every_ops_rule_waits_before_firing() -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "ops-alerts.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules and all(rule.get("for") for rule in rules)


@_needs("promtool")
def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    text = text.replace("/etc/prometheus/cluster/alerts.yml", str(DEPLOY / "prometheus" / "alerts.yml"))
    text = text.replace("/etc/prometheus/cluster/ops-alerts.yml", str(DEPLOY / "prometheus" / "ops-alerts.yml"))
    text = text.replace("/etc/prometheus/cluster/targets", str(DEPLOY / "prometheus" / "targets"))
    (tmp_path / "prometheus.yml").write_text(text)
    check = _run("promtool", "check", "config", str(tmp_path / "prometheus.yml"))
    assert check.returncode == 0, check.stdout + check.stderr


@_needs("haproxy")
def test_haproxy_config_is_valid() -> None:
    check = _run("haproxy", "-c", "-f", str(DEPLOY / "haproxy" / "cluster.cfg"))
    assert check.returncode == 0, check.stdout + check.stderr


@_needs("nginx")
def test_nginx_config_is_valid(tmp_path: Path) -> None:
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid; error_log stderr; events {{}} http {{ access_log off; "
                    f"include {DEPLOY / 'nginx' / 'cluster.conf'}; }}\n")
    check = _run("nginx", "-t", "-c", str(main), "-p", str(tmp_path))
    assert check.returncode == 0, check.stdout + check.stderr


def test_dashboard_has_an_instance_variable_and_the_queue_panels() -> None:
    import json

    dashboard = json.loads((DEPLOY / "grafana" / "cluster.json").read_text())
    assert "instance" in [v["name"] for v in dashboard["templating"]["list"]]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert all('instance=~"$instance"' in expr for expr in exprs), "every query follows the instance picker"
    joined = " ".join(exprs)
    for metric in ("cluster_jobs_dead_total", "cluster_queue_oldest_age_seconds", "cluster_job_duration_seconds"):
        assert metric in joined
