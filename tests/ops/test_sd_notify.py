"""sd_notify from a real supervisor: startup, status, watchdog (and a frozen loop), reload, stop.

The test plays systemd's side of NOTIFY_SOCKET and records each message with
its time relative to the moment the port first answered; run with -s to see
the timeline.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from tests.ops.notify_recorder import NotifyRecorder
from tests.support import http_get, wait_for

WATCHDOG_USEC = 2_000_000


def _first_answer(url: str, stop: threading.Event, seen: list[tuple[float, float]]) -> None:
    """Records (sent, answered) of the first request that gets an HTTP answer."""
    while not stop.is_set():
        sent = time.monotonic()
        try:
            http_get(url, timeout=30)
            seen.append((sent, time.monotonic()))
            return
        except OSError:
            time.sleep(0.02)


def test_notify_timeline(cluster_factory, tmp_path: Path) -> None:
    recorder = NotifyRecorder(tmp_path / "notify.sock")
    stop_polling = threading.Event()
    answered: list[tuple[float, float]] = []
    try:
        c = cluster_factory(
            "tests.apps.slow_boot:create_app()", workers=2, wait_ready=False,
            env={"NOTIFY_SOCKET": recorder.path, "WATCHDOG_USEC": str(WATCHDOG_USEC), "SLOW_BOOT_SECONDS": "6"},
        )
        # WATCHDOG_PID is systemd's pid of the main process: here, the supervisor.
        threading.Thread(target=_first_answer, args=(c.url + "/readyz", stop_polling, answered), daemon=True).start()
        t_ready, ready = wait_for(lambda: next(iter(recorder.having("READY")), None), 120, 0.1, "READY=1")
        sent_at, port_at = wait_for(lambda: answered and answered[0], 30, 0.05, "the port to answer")
        timeline = [("start", t, f) for t, f in recorder.messages]

        assert ready["MAINPID"] == str(c.proc.pid)
        # The supervisor's own /readyz probe and ours race: READY=1 comes after a request
        # that got its answer was sent (the port answered), at about the time ours returns.
        assert t_ready >= sent_at, "READY=1 only once the port answers"
        assert ready["STATUS"].startswith("2/2 http"), ready
        assert len(c.worker_pids()) == 2
        extends = recorder.having("EXTEND_TIMEOUT_USEC")
        assert extends and all(t < t_ready for t, _ in extends), "the slow start asked for more time"

        # The watchdog pings come from the supervisor's loop: freeze it and they stop.
        wait_for(lambda: len(recorder.having("WATCHDOG")) >= 4, 60, 0.1, "watchdog pings")
        pings = [t for t, _ in recorder.having("WATCHDOG")]
        intervals = [b - a for a, b in zip(pings, pings[1:])]
        os.kill(c.proc.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        time.sleep(3 * WATCHDOG_USEC / 1e6)  # the observation window, not a synchronisation
        thawed_at = time.monotonic()
        os.kill(c.proc.pid, signal.SIGCONT)
        during = [t for t, _ in recorder.having("WATCHDOG", after=frozen_at + 0.2) if t < thawed_at]
        assert during == [], "no WATCHDOG=1 while the supervisor's loop is frozen"
        wait_for(lambda: recorder.having("WATCHDOG", after=thawed_at), 30, 0.1, "pings after the thaw")

        # Reload: RELOADING=1 with MONOTONIC_USEC, READY=1 only once the new generation serves.
        old = set(c.worker_pids())
        reload_at = time.monotonic()
        c.proc.send_signal(signal.SIGHUP)
        t_reloading, reloading = wait_for(lambda: next(iter(recorder.having("RELOADING", after=reload_at)), None),
                                          60, 0.05, "RELOADING=1")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        t_ready2, _ = wait_for(lambda: next(iter(recorder.having("READY", after=t_reloading)), None),
                               120, 0.05, "READY=1 after the reload")
        # The old generation drains beside the new one (it leaves once the new one serves): READY=1 means
        # two new workers serve, and the old ones then leave.
        new = set(c.worker_pids()) - old
        assert len(new) == 2, "READY=1 after the reload means the new generation serves"
        wait_for(lambda: not set(c.worker_pids()) & old, 60, 0.2, "the old generation to leave")
        assert t_ready2 - t_reloading > 1.0, "not sent before the new workers booted (their factory takes 6 s)"
        status = http_get(c.url + "/readyz")[0]
        assert status == 200

        stop_at = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)
        assert c.proc.wait(120) == 0
        stopping = recorder.having("STOPPING", after=stop_at)
        assert stopping
        after = [("reload/stop", t, f) for t, f in recorder.messages if t >= reload_at and "WATCHDOG" not in f]
        statuses = [f["STATUS"] for t, f in recorder.messages if t > t_ready and "STATUS" in f]
        assert statuses[-1] == "stopping" and "reloading" in statuses, statuses
        # "N/2 http": N live workers of a target of 2; after a reload the old generation drains beside the
        # new one for a moment (4/2), never fewer than the target serve.
        served = [s.split(" ", 1)[0] for s in statuses if s not in ("reloading", "stopping")]
        assert served and all(s.endswith("/2") and int(s.split("/")[0]) >= 2 for s in served), statuses
    finally:
        stop_polling.set()
        recorder.close()
    print(f"\nport answered at t=0; watchdog intervals seen: {[round(i, 2) for i in intervals]}"
          f" (WATCHDOG_USEC {WATCHDOG_USEC / 1e6:.0f}s)")
    for phase, t, fields in timeline + after:
        if "WATCHDOG" not in fields:
            print(f"{phase:12} t={t - port_at:+8.3f}s {fields}")
