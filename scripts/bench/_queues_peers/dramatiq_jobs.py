"""dramatiq's no-op actor on its Redis broker."""

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from _queues_peers import IO_S

COUNTER = "bench:count"
dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_REDIS_URL"]))
_client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@dramatiq.actor(max_retries=0)
def noop() -> None:
    if IO_S:
        time.sleep(IO_S)
    _client.incr(COUNTER)
