"""Without a jobs module the queue tier runs Redis but no pool processes, and says why."""

from __future__ import annotations

import pytest

from tests.support import http_get

pytestmark = pytest.mark.integration


def test_no_jobs_module_starts_no_pool_processes(cluster_factory) -> None:
    c = cluster_factory(workers=1, queues=True)
    status = c.status()
    groups = {row["group"] for row in status["processes"]}
    assert "redis" in groups
    assert not any(group.startswith("queue-") for group in groups)
    assert status["queues"]["pools"] == {}
    assert "no jobs module" in status["queues"]["reason"]
    code, _, body = http_get(f"{c.url}/health")
    assert code == 200, body
