"""RQ's no-op job."""

import os
import time

import redis

from _queues_peers import IO_S

COUNTER = "bench:count"
_client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def noop() -> None:
    if IO_S:
        time.sleep(IO_S)
    _client.incr(COUNTER)
