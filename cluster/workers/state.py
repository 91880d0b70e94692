"""This worker's own counters, read by its status endpoints."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


@dataclass
class WorkerState:
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    requests: int = 0
    in_flight: int = 0
    draining: bool = False

    def reset_after_fork(self) -> None:
        """Start this worker's counters afresh in a forked child."""
        self.pid = os.getpid()
        self.started = time.time()
        self.requests = 0
        self.in_flight = 0
        self.draining = False


WORKER_STATE = WorkerState()
