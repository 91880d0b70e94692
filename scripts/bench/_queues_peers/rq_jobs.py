"""RQ's no-op job."""

import os

import redis

COUNTER = "bench:count"
_client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def noop() -> None:
    _client.incr(COUNTER)
