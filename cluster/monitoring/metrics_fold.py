"""How dead processes' metric files fold into one archive file per kind (pure).

prometheus_client keeps one file per metric kind and pid and reads every one
on each collection, so collection time grows with every process that ever
lived (client_python issues 204 and 367). Counters, histograms, summaries and
the aggregating gauge modes can be folded: the archive holds, per sample key,
what collection would have computed from the dead files, and the dead files
are removed. ``all``-mode gauges carry a pid label by design and are kept;
``live*`` gauges of dead pids are simply dropped, as ``mark_process_dead`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

ARCHIVE_PID = "archive"
FOLDABLE_GAUGE_MODES = frozenset({"sum", "max", "min", "mostrecent"})

Value = tuple[float, float]  # (value, timestamp)


@dataclass(frozen=True)
class MetricFile:
    """A multiprocess file name understood: ``counter_123.db``, ``gauge_livesum_123.db``..."""

    kind: str  # "counter", "histogram", "summary" or "gauge_<mode>"
    pid: str

    @property
    def gauge_mode(self) -> str | None:
        return self.kind.split("_", 1)[1] if self.kind.startswith("gauge_") else None

    @property
    def foldable(self) -> bool:
        mode = self.gauge_mode
        return mode is None or mode in FOLDABLE_GAUGE_MODES

    @property
    def live_gauge(self) -> bool:
        mode = self.gauge_mode
        return mode is not None and mode.startswith("live")

    @property
    def archive_name(self) -> str:
        return f"{self.kind}_{ARCHIVE_PID}.db"


def parse_name(name: str) -> MetricFile | None:
    """The kind and pid of a metric file name, or None when it is not one."""
    base = os.path.basename(name)
    if not base.endswith(".db"):
        return None
    parts = base[:-3].split("_")
    if parts[0] == "gauge" and len(parts) == 3:
        return MetricFile(f"gauge_{parts[1]}", parts[2])
    if parts[0] in ("counter", "histogram", "summary") and len(parts) == 2:
        return MetricFile(parts[0], parts[1])
    return None


def fold(kind: str, files: Iterable[Iterable[tuple[str, float, float]]]) -> dict[str, Value]:
    """Fold the (key, value, timestamp) entries of several files of one kind into one set.

    Counters, histogram buckets/sums and summaries add up (multiprocess files
    hold per-process, non-cumulative values); gauges follow their mode.
    """
    mode = kind.split("_", 1)[1] if kind.startswith("gauge_") else "sum"
    out: dict[str, Value] = {}
    for entries in files:
        for key, value, timestamp in entries:
            before = out.get(key)
            if before is None:
                out[key] = (value, timestamp)
            elif mode == "sum":
                out[key] = (before[0] + value, max(before[1], timestamp))
            elif mode == "max":
                out[key] = max(before, (value, timestamp))
            elif mode == "min":
                out[key] = min(before, (value, timestamp))
            elif mode == "mostrecent":
                out[key] = (value, timestamp) if timestamp > before[1] else before
            else:
                raise ValueError(f"cannot fold gauges of mode {mode!r}")
    return out
