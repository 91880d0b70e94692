"""`cluster bench` against a real local aiohttp server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, cli_env, free_port, http_get, run_cli, wait_for

pytestmark = pytest.mark.integration

REPORT_KEYS = {
    "url", "mode", "procs", "users", "requests_per_user", "duration_s", "target_rps", "slo_p95_ms", "slo_errors_pct",
    "endpoints", "interrupted", "requests", "successes", "error_total", "errors", "success_pct", "error_pct",
    "elapsed_s", "rps", "latency_ms", "latency_from", "saturation", "timeline",
}
LATENCY_KEYS = {"min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"}
ERROR_KEYS = {"connect", "timeout", "4xx", "5xx", "other"}


@pytest.fixture
def target() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.bench_target", str(port)],
                            env=cli_env({"STALL_AFTER": "1.0", "STALL_FOR": "1.0"}), cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_get(f"{url}/ok")[0] == 200, 30, 0.1, "the bench target")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _bench(*args: str) -> dict:
    result = run_cli("bench", *args, "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _assert_counts_add_up(report: dict) -> None:
    assert report["requests"] == report["successes"] + report["error_total"]
    assert report["error_total"] == sum(report["errors"].values())


def test_load_run_counts_add_up_and_json_has_every_field(target: str, tmp_path: Path) -> None:
    mix = tmp_path / "mix.txt"
    mix.write_text("6 GET /ok\n1 GET /fail\n1 GET /missing\n2 GET /chunked\n")
    plot = tmp_path / "run.png"
    report = _bench(target, "--mix", str(mix), "--duration", "2", "--users", "4", "--procs", "2",
                    "--plot", str(plot))
    assert REPORT_KEYS <= set(report)
    assert set(report["latency_ms"]) == LATENCY_KEYS and set(report["errors"]) == ERROR_KEYS
    assert report["procs"] == 2 and report["latency_from"] == "actual send time"
    assert report["requests"] > 100
    _assert_counts_add_up(report)
    assert report["errors"]["4xx"] > 0 and report["errors"]["5xx"] > 0
    assert report["errors"]["connect"] == report["errors"]["timeout"] == report["errors"]["other"] == 0
    assert all(report["latency_ms"][key] is not None for key in LATENCY_KEYS)
    assert report["latency_ms"]["min"] <= report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] \
        <= report["latency_ms"]["max"]
    assert sum(row["requests"] for row in report["timeline"]) == report["requests"]
    assert len(report["saturation"]["generator_cpu_pct"]) == 2
    assert plot.stat().st_size > 1000


def test_requests_per_user_mode_sends_exactly_that_many(target: str) -> None:
    report = _bench(f"{target}/ok", "--requests", "25", "--users", "3", "--procs", "2")
    assert report["requests"] == 75 == report["successes"]


def test_endurance_run_shows_a_one_second_server_stall_in_p99(target: str) -> None:
    report = _bench(f"{target}/stall", "--mode", "endurance", "--rps", "100", "--duration", "3",
                    "--users", "2", "--procs", "1")
    _assert_counts_add_up(report)
    assert report["latency_from"] == "scheduled send time" and report["target_rps"] == 100
    # About 100 requests were due while the server was frozen: counted from when they were due,
    # they waited up to a second, so p99 is near one second, not a few milliseconds.
    assert report["latency_ms"]["p99"] >= 500.0
    assert report["latency_ms"]["p50"] < 500.0


def test_stress_ramp_reports_each_step_and_the_breaking_point(target: str, tmp_path: Path) -> None:
    mix = tmp_path / "mix.txt"
    mix.write_text("9 GET /ok\n1 GET /fail\n")
    report = _bench(target, "--mix", str(mix), "--mode", "stress", "--start", "1", "--max-users", "3",
                    "--step", "1", "--step-duration", "1", "--slo-errors", "0.5", "--procs", "2")
    _assert_counts_add_up(report)
    assert [step["users"] for step in report["steps"]] == [1, 2, 3]
    assert sum(step["requests"] for step in report["steps"]) == report["requests"]
    assert report["breaking_point"]["step"] == 1  # 10 % errors from the first step on
    held = _bench(f"{target}/ok", "--mode", "stress", "--start", "1", "--max-users", "2", "--step", "1",
                  "--step-duration", "1", "--slo-errors", "1", "--slo-p95", "60000")
    assert held["breaking_point"] is None and len(held["steps"]) == 2


def test_ctrl_c_stops_the_run_and_still_reports(target: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", "bench", f"{target}/ok", "--mode", "stress",
                             "--start", "1", "--max-users", "4", "--step", "1", "--step-duration", "30",
                             "--slo-p95", "1000", "--procs", "2", "--json", "--no-progress"],
                            env=cli_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The run is planned for 120 s: interrupt it once the target has answered some of its requests.
    wait_for(lambda: json.loads(http_get(f"{target}/served")[2])["ok"] >= 5, 60, 0.1, "the bench to send requests")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["interrupted"] is True and report["requests"] > 0
    _assert_counts_add_up(report)
    assert [step["users"] for step in report["steps"]] == [1]  # the steps never reached are left out
    assert report["breaking_point"] is None


def test_timeouts_are_counted_as_timeouts(target: str) -> None:
    report = _bench(f"{target}/slow", "--requests", "2", "--users", "1", "--procs", "1", "--timeout", "0.3")
    assert report["requests"] == 2 == report["errors"]["timeout"]
    assert report["latency_ms"]["min"] >= 300.0  # a timeout is recorded as at least the time waited


def test_connection_errors_are_counted_not_fatal() -> None:
    report = _bench(f"http://127.0.0.1:{free_port()}/", "--requests", "5", "--users", "2", "--procs", "1")
    assert report["requests"] == 10 == report["errors"]["connect"]
    assert report["success_pct"] == 0.0


@pytest.mark.parametrize("args, message", [
    (["--mode", "endurance"], "endurance needs --rps"),
    (["--mode", "stress"], "stress needs an SLO"),
    (["--requests", "5", "--duration", "1"], "not both"),
    (["--mix", "/nonexistent/mix.txt"], "cannot read mix file"),
    (["-H", "bad-header"], "is not 'Name: value'"),
    (["--mode", "stress", "--rps", "10", "--slo-p95", "5"], "--rps is for --mode endurance"),
    (["--method", "FETCH"], "FETCH"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = run_cli("bench", "http://127.0.0.1:9/", *args, "--no-progress")
    assert result.returncode == 2
    assert message in result.stderr


def test_https_target_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.bench_target", str(port), str(cert), str(key)],
                            env=cli_env(), cwd=ROOT)
    try:
        url = f"https://127.0.0.1:{port}"
        wait_for(lambda: run_cli("bench", f"{url}/ok", "-n", "1", "-c", "1", "-p", "1", "--insecure", "--json",
                                 "--no-progress").stdout.count('"successes": 1') == 1, 30, 0.2, "the HTTPS target")
        mix = tmp_path / "mix.txt"
        mix.write_text("3 GET /ok\n1 GET /chunked\n")
        report = _bench(url, "--mix", str(mix), "--insecure", "--requests", "20", "--users", "2", "--procs", "1")
        assert report["requests"] == 40 == report["successes"]
        # Verified by default: the self-signed certificate is refused, counted as connection errors.
        refused = _bench(f"{url}/ok", "--requests", "2", "--users", "1", "--procs", "1")
        assert refused["errors"]["connect"] == 2
    finally:
        proc.terminate()
        proc.wait(10)
