"""The supervisor's side of the metrics directory: collect, expose, and keep it small.

Everything here is synchronous file I/O: callers run it in an executor, never
on the event loop. Collection and compaction share one lock, so a scrape never
sees an archive half written or a dead file both folded and still present.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from cluster.monitoring.metrics_fold import MetricFile, fold, parse_name

log = logging.getLogger("cluster.metrics")


@dataclass
class CompactionResult:
    folded_files: int = 0
    dropped_files: int = 0
    seconds: float = 0.0


class _Families:
    """What ``generate_latest`` needs: an object whose ``collect()`` yields metric families."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class MetricsStore:
    """Reads ``<state_dir>/metrics`` for /metrics and the monitor; folds dead pids' files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def collect(self) -> list[Metric]:
        """Every process's samples, aggregated (prometheus_client's own merge)."""
        with self._lock:
            return list(MultiProcessCollector(None, str(self.directory)).collect())

    def exposition(self, extra: Iterable[Metric] = ()) -> bytes:
        """The Prometheus text format of the files plus ``extra`` families no process wrote."""
        families = self.collect()
        written = {family.name for family in families}
        families.extend(family for family in extra if family.name not in written)
        return generate_latest(_Families(families))

    def file_count(self) -> int:
        return sum(1 for name in os.listdir(self.directory) if name.endswith(".db"))

    def compact(self, alive: Callable[[int], bool]) -> CompactionResult:
        """Fold the files of dead pids into one archive per kind; drop their live gauges."""
        started = time.perf_counter()
        result = CompactionResult()
        dead: dict[str, list[Path]] = {}
        with self._lock:
            for name in os.listdir(self.directory):
                parsed = parse_name(name)
                if parsed is None or not parsed.pid.isdigit() or alive(int(parsed.pid)):
                    continue
                path = self.directory / name
                if parsed.live_gauge:
                    path.unlink(missing_ok=True)
                    result.dropped_files += 1
                elif parsed.foldable:
                    dead.setdefault(parsed.kind, []).append(path)
            for kind, paths in dead.items():
                self._fold_into_archive(MetricFile(kind, "archive"), paths)
                result.folded_files += len(paths)
        result.seconds = time.perf_counter() - started
        if result.folded_files or result.dropped_files:
            log.info(
                "metrics files of dead processes compacted",
                extra={"folded": result.folded_files, "dropped": result.dropped_files,
                       "seconds": round(result.seconds, 4)},
            )
        return result

    def _fold_into_archive(self, archive: MetricFile, paths: list[Path]) -> None:
        target = self.directory / archive.archive_name
        sources = [target, *paths] if target.exists() else paths
        folded = fold(archive.kind, (_entries(path) for path in sources))
        # Not ending in .db: a collection never globs a half-written archive.
        tmp = self.directory / f"{archive.kind}_archive.tmp"
        tmp.unlink(missing_ok=True)
        written = MmapedDict(str(tmp))
        try:
            for key, (value, timestamp) in folded.items():
                written.write_value(key, value, timestamp)
        finally:
            written.close()
        os.replace(tmp, target)
        for path in paths:
            path.unlink(missing_ok=True)


def _entries(path: Path) -> list[tuple[str, float, float]]:
    return [(key, value, timestamp) for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(path))]
