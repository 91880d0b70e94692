"""No-op jobs (one INCR) for scripts/bench/queues, one module per queue system."""

import os

# Seconds of simulated I/O each job waits before its INCR (BENCH_IO_MS, default 0: a no-op job).
IO_S = float(os.environ.get("BENCH_IO_MS", "0")) / 1000
