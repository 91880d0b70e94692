"""The autoscaler on a real cluster: CPU load scales the workers up, idleness back to min, nothing fails."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.exposition import generate_latest

from tests.support import ClusterProcess, RequestLoop, http_get, wait_for

APP = "tests.apps.burn:create_app()"
# Short intervals for the test; the machine's CPU guard is lifted because the
# test's own load (and other engineers' tests) can saturate a 2-core machine.
FAST = {
    "CLUSTER_AUTOSCALE_SAMPLE_INTERVAL": "0.5",
    "CLUSTER_AUTOSCALE_COOLDOWN": "1",
    "CLUSTER_AUTOSCALE_STABILIZATION_WINDOW": "3",
    "CLUSTER_AUTOSCALE_WARMUP": "1",
    "CLUSTER_AUTOSCALE_UP_SAMPLES": "2",
    "CLUSTER_AUTOSCALE_DOWN_SAMPLES": "2",
    "CLUSTER_AUTOSCALE_SYSTEM_CPU_CEILING": "100",
    # Low thresholds: a saturated worker on a machine shared with other tests
    # may get well under half a core, yet must read as overloaded; idle
    # workers serving the light loop stay far below the down threshold.
    "CLUSTER_AUTOSCALE_SCALE_UP_THRESHOLD": "30",
    "CLUSTER_AUTOSCALE_SCALE_DOWN_THRESHOLD": "8",
    "CLUSTER_AUTOSCALE_MIN_FREE_MEMORY_MB": "0",
}

pytestmark = pytest.mark.integration


def autoscaler(cluster: ClusterProcess) -> dict[str, Any]:
    return cluster.status()["autoscaler"]


def metric_samples(state_dir: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(state_dir / "metrics"))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_cpu_load_scales_up_from_min_and_back_to_min_with_no_failed_request(
    cluster_factory: Callable[..., ClusterProcess],
) -> None:
    cluster = cluster_factory(APP, "--min-workers", "1", "--max-workers", "3", env=FAST)
    assert autoscaler(cluster)["current"] == 1

    with RequestLoop(cluster.url, ["/burn?ms=100"] * 4, timeout=60) as load:
        scaled = wait_for(lambda: (a := autoscaler(cluster))["events"]["up"] >= 1 and a["current"] >= 2 and a,
                          120, 0.5, "a scale-up under CPU load")
    assert load.failures == []
    assert scaled["target"] >= 2 and scaled["last_change"]["direction"] == "up"

    # Requests stay in flight (without CPU) on the workers being retired.
    with RequestLoop(cluster.url, ["/sleep?ms=200"] * 3, timeout=60) as light:
        back = wait_for(
            lambda: (a := autoscaler(cluster))["current"] == 1 and a["target"] == 1 and a["events"]["down"] >= 1 and a,
            120, 0.5, "the workers to return to min once the load stops",
        )
    assert light.ok > 0
    assert light.failures == [], light.failures[:5]
    assert back["mode"] == "auto" and back["min"] == 1 and back["max"] == 3

    events = [line for line in cluster.logs() if line.get("event") == "autoscale"]
    assert {e["direction"] for e in events} == {"up", "down"}
    for event in events:
        assert {"from", "to", "reason", "mean_cpu", "system_cpu"} <= set(event)
        assert event["from"] != event["to"] and event["reason"]

    samples = metric_samples(cluster.state_dir)
    assert samples[("cluster_autoscale_events_total", (("direction", "up"),))] == back["events"]["up"]
    assert samples[("cluster_autoscale_events_total", (("direction", "down"),))] == back["events"]["down"]
    assert ("cluster_workers", ()) in samples

    status, _, body = http_get(cluster.url + "/api/enterprise/cluster/status")
    assert status == 200
    over_http = json.loads(body)["autoscaler"]
    assert over_http["last_decision"]["reason"] and "cooldown_remaining" in over_http
    text = cluster.cli("status")
    assert text.returncode == 0 and "autoscaler: auto" in text.stdout and "last decision:" in text.stdout


def test_scale_down_retires_the_least_busy_worker_not_the_oldest(
    cluster_factory: Callable[..., ClusterProcess],
) -> None:
    # The long request lands on the only (so the oldest) worker; a younger idle
    # one is added; gunicorn would retire the oldest, busy one, we the idle one.
    cluster = cluster_factory(APP, "--min-workers", "1", "--max-workers", "3", env=FAST)
    [oldest] = cluster.worker_pids()
    result: dict[str, Any] = {}

    # The burn must outlast the scale to 2, the busy/idle check and the scale to 1, each a CLI call that
    # takes seconds on a loaded machine: once it ends the two workers are equally idle, and the oldest goes.
    def long_burn() -> None:
        result["response"] = http_get(cluster.url + "/burn?ms=30000", timeout=180)

    burner = threading.Thread(target=long_burn)
    burner.start()
    assert cluster.cli("scale", "2").returncode == 0

    def young_is_idle_and_old_is_busy() -> bool:
        rows = {r["pid"]: r for r in cluster.status()["processes"] if r["group"] == "http-worker"}
        young = [r for pid, r in rows.items() if pid != oldest]
        return (len(rows) == 2 and (rows[oldest]["cpu_percent"] or 0) > 25
                and young[0]["cpu_percent"] is not None and young[0]["cpu_percent"] < 10)

    wait_for(young_is_idle_and_old_is_busy, 60, 0.2, "a busy oldest worker and an idle young one")
    assert cluster.cli("scale", "1").returncode == 0
    wait_for(lambda: cluster.worker_pids() == [oldest], 60, 0.2, "the idle young worker to be retired")
    burner.join(180)
    status, _, body = result["response"]
    assert status == 200 and json.loads(body)["pid"] == oldest


def test_manual_pin_survives_a_reload_and_auto_and_bounds_work_through_the_cli(
    cluster_factory: Callable[..., ClusterProcess],
) -> None:
    cluster = cluster_factory(APP, "--min-workers", "1", "--max-workers", "3", env=FAST)
    pinned = cluster.cli("scale", "3")
    assert pinned.returncode == 0 and "manual" in pinned.stdout
    wait_for(lambda: len(cluster.worker_pids()) == 3, 60, 0.2, "three workers")
    # idle workers would be scaled down in auto mode; the pin holds them
    wait_for(lambda: "manual" in (autoscaler(cluster)["last_decision"] or {}).get("reason", ""), 30, 0.2,
             "a decision under the manual pin")
    before = set(cluster.worker_pids())

    assert cluster.cli("reload").returncode == 0
    wait_for(lambda: not before & set(cluster.worker_pids()) and len(cluster.worker_pids()) == 3, 90, 0.3,
             "the reload to replace every worker")
    assert autoscaler(cluster)["target"] == 3

    out_of_bounds = cluster.cli("scale", "5")
    assert out_of_bounds.returncode != 0 and "outside" in out_of_bounds.stderr

    assert cluster.cli("scale", "--auto").returncode == 0
    wait_for(lambda: (a := autoscaler(cluster))["current"] == 1 and a["target"] == 1, 90, 0.3,
             "idle workers scaled down to min in auto mode")

    bounds = cluster.cli("scale", "--min", "2", "--max", "2")
    assert bounds.returncode == 0
    wait_for(lambda: (a := autoscaler(cluster))["current"] == 2 and a["min"] == 2, 60, 0.3, "the new minimum")
