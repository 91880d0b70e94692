"""The router's Prometheus metrics (multiprocess mode: each worker writes its own files)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

QUERIES = Counter("cluster_db_queries_total", "Checkouts routed to a host (reads, writes, transactions)",
                  ["host", "role"])
ERRORS = Counter("cluster_db_errors_total", "Failed attempts on a host (connection lost, conflict, timeout)",
                 ["host"])
LAG_SECONDS = Gauge("cluster_db_replica_lag_seconds", "Replay lag of a replica in seconds, as last checked",
                    ["host"], multiprocess_mode="livemax")
LAG_BYTES = Gauge("cluster_db_replica_lag_bytes", "Replay lag of a replica behind the primary's WAL, in bytes",
                  ["host"], multiprocess_mode="livemax")
IN_USE = Gauge("cluster_db_connections_in_use", "Pool connections checked out, as of the last health check",
               ["host"], multiprocess_mode="livesum")
HEALTHY = Gauge("cluster_db_host_healthy", "1 when the host is up (and fresh, for a replica), else 0",
                ["host"], multiprocess_mode="livemin")
SLOW_QUERIES = Counter("cluster_db_slow_queries", "Routed statements slower than database.slow_query_ms", ["host"])
READ_TIMEOUTS = Counter("cluster_db_read_timeouts", "Routed reads cut at database.read_timeout (then failed over)",
                        ["host"])
