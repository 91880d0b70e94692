"""No-op jobs (one INCR) for scripts/bench/queues, one module per queue system."""
