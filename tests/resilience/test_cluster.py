"""Rate limits and the cache in a real `cluster start`: two workers, and two clusters on one Redis."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support import ClusterProcess, http_get, wait_for

pytestmark = pytest.mark.integration
RULES = json.dumps([{"path": "/ruled/*", "limit": "5/minute", "per": "ip"}])


def env_for(redis_url: str) -> dict[str, str]:
    return {"CLUSTER_SERVER_APP": "tests.apps.resilient:make()", "CLUSTER_REDIS_URL": redis_url,
            "CLUSTER_RATELIMIT_RULES": RULES}


def statuses(clusters: list[ClusterProcess], requests: int) -> tuple[list[int], set[str]]:
    """Requests on fresh connections (so the kernel spreads them over the workers), round robin over clusters."""
    codes, pids = [], set()
    for i in range(requests):
        status, _, body = http_get(clusters[i % len(clusters)].url + "/ruled/1")
        codes.append(status)
        served = http_get(clusters[i % len(clusters)].url + "/plain/1")[2]
        pids.add(json.loads(served)["pid"])
    return codes, pids


def test_two_workers_share_one_limit(cluster_factory: Callable[..., ClusterProcess], redis_url: str) -> None:
    cluster = cluster_factory(env=env_for(redis_url), workers=2)
    wait_for(lambda: len(cluster.worker_pids()) == 2, 60, 0.2, "two workers")
    codes, pids = statuses([cluster], 40)
    assert len(pids) == 2, "both workers served requests"
    assert codes.count(200) == 5 and codes.count(429) == 35, codes


def test_two_clusters_on_one_redis_share_one_limit(cluster_factory: Callable[..., ClusterProcess],
                                                   redis_url: str) -> None:
    first = cluster_factory(env=env_for(redis_url), workers=1, name="one")
    second = cluster_factory(env=env_for(redis_url), workers=1, name="two")
    codes, _ = statuses([first, second], 20)
    assert codes.count(200) == 5, codes
    assert http_get(first.url + "/cached/3")[0] == 200
    assert json.loads(http_get(second.url + "/cached/3")[2])["computed_here"] == 0  # the first one's value
