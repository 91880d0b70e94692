"""Replay a CPU trace through the real alert state machine and the channels' grouping window.

    python scripts/alert_replay.py                 # the synthetic idle-busy-idle 10-minute trace
    python scripts/alert_replay.py trace.csv       # "seconds,cpu_percent" lines, e.g. recorded with psutil

Settings come from the usual sources (defaults, cluster.toml, CLUSTER_* variables), so an operator
can see what a threshold or timing change would have sent. Prints each notification and, per
channel, how many messages the grouping window makes of them.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from cluster.monitoring.alerts import AlertBook, Lifecycle, Notification, Thresholds
from cluster.monitoring.channels import Grouper
from cluster.config import load

INTERVAL = 5.0  # monitoring.metrics_interval's default


def synthetic_trace(seed: int = 14) -> list[tuple[float, float]]:
    """10 minutes, a sample every 5 s: the boot at 100 % (15 s), idle until 3 min, busy and jittery
    (60-100 %, as when other work shares the host) until 7 min, idle again."""
    rng = random.Random(seed)
    trace = []
    for i in range(int(600 / INTERVAL)):
        t = i * INTERVAL
        if t < 15:
            value = 100.0
        elif 180 <= t < 420:
            value = rng.choice([rng.uniform(60, 75), rng.uniform(85, 100), rng.uniform(92, 100)])
        else:
            value = rng.uniform(3, 20)
        trace.append((t, value))
    return trace


def read_trace(path: Path) -> list[tuple[float, float]]:
    rows = (line.split(",") for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return [(float(t), float(v)) for t, v in rows]


def replay(trace: list[tuple[float, float]]) -> tuple[list[tuple[float, Notification]], list[list[Notification]]]:
    """The notifications, and the messages one channel sends (groups closed by the window)."""
    settings = load().settings
    mon = settings.monitoring
    book = AlertBook(Lifecycle.from_settings(mon), started=trace[0][0])
    thresholds = Thresholds(mon.cpu_warning, mon.cpu_critical)
    grouper = Grouper(settings.alerts.group_wait)
    notes: list[tuple[float, Notification]] = []
    messages: list[list[Notification]] = []
    for now, value in trace:
        messages += [g for g in [grouper.take(now)] if g]
        for note in book.evaluate("cpu", value, thresholds, now):
            notes.append((now, note))
            grouper.add(note, now)
        messages += [g for g in [grouper.take(now)] if g]
    end = trace[-1][0] + settings.alerts.group_wait
    messages += [g for g in [grouper.take(end)] if g]
    return notes, messages


def main() -> None:
    trace = read_trace(Path(sys.argv[1])) if len(sys.argv) > 1 else synthetic_trace()
    notes, messages = replay(trace)
    for now, note in notes:
        print(f"{now:7.1f}s  {note.summary}")
    span = trace[-1][0] - trace[0][0]
    print(f"{len(trace)} samples over {span:.0f} s: {len(notes)} notifications, "
          f"{len(messages)} messages per configured channel")


if __name__ == "__main__":
    main()
