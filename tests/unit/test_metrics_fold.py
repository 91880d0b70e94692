"""Folding dead processes' multiprocess files keeps what /metrics reports, with fewer files."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from cluster.monitoring.metrics_fold import fold, parse_name
from cluster.monitoring.metrics_store import MetricsStore


def write(path: Path, entries: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[float, float]]) -> None:
    d = MmapedDict(str(path))
    for (metric, sample, labels), (value, ts) in entries.items():
        names = [k for k, _ in labels]
        values = [v for _, v in labels]
        d.write_value(mmap_key(metric, sample, names, values, "help"), value, ts)
    d.close()


def exposition_samples(store: MetricsStore) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in store.collect() for s in family.samples
    }


def test_parse_names():
    assert parse_name("counter_12.db").kind == "counter"
    assert parse_name("gauge_livesum_12.db").pid == "12"
    assert parse_name("gauge_livesum_12.db").live_gauge
    assert not parse_name("gauge_all_12.db").foldable
    assert parse_name("gauge_max_archive.db").pid == "archive"
    assert parse_name("notes.txt") is None
    assert parse_name("counter_archive.tmp") is None


def test_fold_by_mode():
    a = [("k", 1.0, 10.0)]
    b = [("k", 5.0, 5.0)]
    assert fold("counter", [a, b]) == {"k": (6.0, 10.0)}
    assert fold("gauge_max", [a, b]) == {"k": (5.0, 5.0)}
    assert fold("gauge_min", [a, b]) == {"k": (1.0, 10.0)}
    assert fold("gauge_mostrecent", [a, b]) == {"k": (1.0, 10.0)}
    with pytest.raises(ValueError):
        fold("gauge_all", [a, b])


def test_compaction_keeps_the_aggregate_and_removes_dead_files(tmp_path: Path):
    req = ("http_requests", "http_requests_total", (("route", "/a"),))
    bucket = ("lat", "lat_bucket", (("le", "0.1"),))
    inf = ("lat", "lat_bucket", (("le", "+Inf"),))
    total = ("lat", "lat_sum", ())
    live_pid, dead = 1, [1001, 1002, 1003]
    for i, pid in enumerate([live_pid, *dead]):
        write(tmp_path / f"counter_{pid}.db", {req: (10.0 + i, 0.0)})
        write(tmp_path / f"histogram_{pid}.db", {bucket: (2.0, 0.0), inf: (1.0, 0.0), total: (0.3, 0.0)})
        write(tmp_path / f"gauge_livesum_{pid}.db", {("inflight", "inflight", ()): (1.0, 0.0)})
        write(tmp_path / f"gauge_all_{pid}.db", {("info", "info", ()): (float(pid), 0.0)})
    store = MetricsStore(tmp_path)
    before = exposition_samples(store)

    result = store.compact(lambda pid: pid == live_pid)

    after = exposition_samples(store)
    assert result.folded_files == 6 and result.dropped_files == 3
    # live gauges of the dead are gone (mark_process_dead's job); everything else is unchanged
    assert after.pop(("inflight", ())) == 1.0
    assert before.pop(("inflight", ())) == 4.0
    assert after == before
    assert after[("http_requests_total", (("route", "/a"),))] == 10 + 11 + 12 + 13
    assert after[("lat_count", ())] == 12.0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([
        "counter_1.db", "histogram_1.db", "gauge_livesum_1.db", "counter_archive.db", "histogram_archive.db",
        "gauge_all_1.db", "gauge_all_1001.db", "gauge_all_1002.db", "gauge_all_1003.db",
    ])


def test_compaction_twice_adds_into_the_existing_archive(tmp_path: Path):
    req = ("c", "c_total", ())
    store = MetricsStore(tmp_path)
    write(tmp_path / "counter_2001.db", {req: (3.0, 0.0)})
    store.compact(lambda pid: False)
    write(tmp_path / "counter_2002.db", {req: (4.0, 0.0)})
    store.compact(lambda pid: False)
    assert exposition_samples(store) == {("c_total", ()): 7.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_archive.db"]


def test_exposition_adds_only_families_no_process_wrote(tmp_path: Path):
    from prometheus_client.metrics_core import GaugeMetricFamily

    write(tmp_path / "counter_1.db", {("cluster_workers", "cluster_workers_total", ()): (1.0, 0.0)})
    store = MetricsStore(tmp_path)
    text = store.exposition([GaugeMetricFamily("cluster_workers", "x", value=9),
                             GaugeMetricFamily("cluster_health_score", "x", value=80)]).decode()
    assert "cluster_workers 9" not in text
    assert "cluster_health_score 80.0" in text
