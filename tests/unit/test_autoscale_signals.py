"""What the autoscaler measures: unexpected worker exits, CPU meters, and its status lines."""

from __future__ import annotations

import os
import socket
import time

from cluster.autoscale.signals import SystemCpu, UnexpectedExits, WorkerCpuMeter, bound_ports, listen_backlog, \
    parse_listen_backlog
from cluster.cli.autoscale import status_lines


def test_exits_that_were_announced_are_no_crash() -> None:
    exits = UnexpectedExits(deaths=3, window=60)
    assert not exits.observe(0, 0.0)
    exits.expect(4)
    assert not exits.observe(4, 1.0)


def test_unannounced_exits_within_the_window_are_a_crash_loop_that_ends() -> None:
    exits = UnexpectedExits(deaths=3, window=60)
    exits.observe(0, 0.0)
    exits.expect(1)
    assert not exits.observe(3, 1.0)
    assert exits.observe(4, 2.0)
    assert exits.observe(4, 50.0)
    assert not exits.observe(4, 70.0)


def _spin(seconds: float) -> None:
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass


def test_worker_cpu_leaves_out_workers_younger_than_the_warmup_and_first_samples() -> None:
    meter = WorkerCpuMeter()
    first = meter.measure([os.getpid()], warmup=0.0)
    assert first.mean is None and first.warming == 1
    _spin(0.2)
    second = meter.measure([os.getpid()], warmup=0.0)
    assert second.mean is not None and second.mean > 0 and second.max == second.mean
    young = meter.measure([os.getpid()], warmup=10_000.0)
    assert young.mean is None and young.warming == 1


def test_system_cpu_is_a_percentage() -> None:
    meter = SystemCpu()
    _spin(0.1)
    assert 0.0 <= meter.measure() <= 100.0


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
