"""What the autoscaler measures: CPU meters, the listen backlog, and its status lines."""

from __future__ import annotations

import socket
from collections import namedtuple

from cluster.autoscale.signals import SystemCpu, bound_ports, listen_backlog, parse_listen_backlog, worker_cpu
from cluster.cli.autoscale import status_lines
from cluster.observability.process import CpuMeter, Reading


def _reading(pid: int, cpu: float | None, started: float = 0.0) -> Reading:
    return Reading(pid=pid, started=started, cpu_percent=cpu, rss_bytes=0, status="running")


def test_worker_cpu_leaves_out_workers_younger_than_the_warmup_and_first_samples() -> None:
    readings = [_reading(1, 40.0), _reading(2, None), _reading(3, 90.0, started=95.0), _reading(4, 60.0)]
    cpu = worker_cpu(readings, warmup=10.0, wall=100.0)
    assert cpu.per_worker == {1: 40.0, 4: 60.0} and cpu.warming == 2
    assert cpu.mean == 50.0 and cpu.max == 60.0
    assert worker_cpu([], warmup=0.0, wall=0.0).mean is None


def test_the_meter_gives_cpu_as_a_percentage_of_one_core_between_readings() -> None:
    cpu = {7: 1.0}
    meter = CpuMeter(lambda pid: (cpu[pid], 50.0, 4096, "sleeping"))
    assert meter.read([7], now=10.0)[7].cpu_percent is None
    cpu[7] = 1.5
    second = meter.read([7], now=12.0)[7]
    assert second.cpu_percent == 25.0 and second.rss_bytes == 4096 and second.started == 50.0


def test_system_cpu_is_the_busy_share_of_all_ticks_since_the_last_call() -> None:
    Times = namedtuple("Times", "user system idle iowait")
    ticks = iter([Times(100, 50, 800, 50), Times(160, 70, 900, 70)])
    meter = SystemCpu(lambda: next(ticks))
    # 200 ticks passed, 120 of them idle or waiting on I/O: 40 % busy.
    assert meter.measure() == 40.0


def test_status_lines_show_mode_bounds_decision_and_cooldown() -> None:
    body = {"autoscaler": {
        "mode": "auto", "current": 3, "target": 4, "min": 1, "max": 8, "cooldown_remaining": 12.5,
        "scale_down_penalty": 2.0,
        "signals": {"mean_cpu": 91.0, "max_cpu": 99.0, "system_cpu": 70.0, "free_memory_mb": 900,
                    "listen_backlog": 4, "crash_looping": False},
        "last_decision": {"reason": "mean CPU 91% > 80% for 2 samples: 3 -> 4"},
        "last_change": {"direction": "up", "from": 3, "to": 4, "reason": "mean CPU 91% > 80%"},
        "events": {"up": 2, "down": 1},
    }}
    text = "\n".join(status_lines(body))
    assert "auto · workers 3 (target 4, min 1, max 8) · cooldown 12.5s left" in text
    assert "penalty x2" in text and "mean 91%" in text and "listen backlog 4" in text and "last decision: mean CPU 91%" in text
    assert "up 3 -> 4" in text and "events: up 2, down 1" in text
    assert status_lines({}) == []


def test_parse_listen_backlog_sums_the_accept_queues_of_listening_sockets_on_the_ports() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000005 00:00000000 00000000     0        0 1\n"
        "   1: 00000000:1F40 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 2\n"
        "   2: 0100007F:1F40 0100007F:D2F0 01 00000000:00000007 00:00000000 00000000     0        0 3\n"
        "   3: 0100007F:0016 00000000:0000 0A 00000000:00000009 00:00000000 00000000     0        0 4\n"
    )
    assert parse_listen_backlog(table, {8000}) == 7
    assert parse_listen_backlog(table, {22, 8000}) == 16
    assert bound_ports(["127.0.0.1:8000", "[::]:8001", "unix:/run/x.sock"]) == {8000, 8001}
    assert listen_backlog(set()) is None


def test_listen_backlog_counts_connections_nobody_accepted_yet() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        assert listen_backlog({port}) == 0
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            assert listen_backlog({port}) == 3
            server.accept()[0].close()
            assert listen_backlog({port}) == 2
        finally:
            for client in clients:
                client.close()
