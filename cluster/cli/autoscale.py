"""The autoscaler's lines in `cluster status`."""

from __future__ import annotations

from typing import Any


def status_lines(body: dict[str, Any]) -> list[str]:
    """Human-readable autoscaler state from the status JSON (empty when the autoscaler is not installed)."""
    auto = body.get("autoscaler")
    if not auto:
        return []
    lines = [
        f"autoscaler: {auto['mode']} · workers {auto['current']} (target {auto['target']}, "
        f"min {auto['min']}, max {auto['max']}) · cooldown {auto['cooldown_remaining']}s left"
        + (f" · scale-down penalty x{auto['scale_down_penalty']:g}" if auto["scale_down_penalty"] > 1 else "")
    ]
    signals = auto.get("signals")
    if signals:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}%"

        lines.append(
            f"  CPU: workers mean {pct(signals['mean_cpu'])} max {pct(signals['max_cpu'])} · "
            f"machine {pct(signals['system_cpu'])} · free memory {signals['free_memory_mb']} MiB"
            + ("" if signals.get("listen_backlog") is None else f" · listen backlog {signals['listen_backlog']}")
            + (" · CRASH-LOOPING" if signals["crash_looping"] else "")
        )
    decision = auto.get("last_decision")
    if decision:
        lines.append(f"  last decision: {decision['reason']}")
    change = auto.get("last_change")
    if change:
        lines.append(f"  last change: {change['direction']} {change['from']} -> {change['to']}: {change['reason']}")
    lines.append(f"  events: up {auto['events']['up']}, down {auto['events']['down']}")
    return lines
