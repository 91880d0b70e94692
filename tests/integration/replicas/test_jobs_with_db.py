"""Queue jobs use the replica router from their context, and read-your-writes travels with the job.

Real redis-server, real primary + streaming replicas; replay is paused on every
replica, so a read that lands on one cannot see a fresh write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cluster.config import Settings
from cluster.observability.context import read_your_writes_var
from cluster.queues.client import QueueClient
from tests.integration.replicas import db_jobs  # noqa: F401  (registers the jobs)
from tests.pg_fixture import PgCluster
from tests.queues.helpers import consume_until
from tests.redis_fixture import redis_server, redis_url  # noqa: F401  (fixtures)
from cluster.db import router_from_settings
from tests.support import run_async

pytestmark = pytest.mark.integration


@pytest.fixture
def paused(pg_cluster: PgCluster) -> Iterator[PgCluster]:
    pg_cluster.sql("primary", "CREATE TABLE IF NOT EXISTS job_notes (value text)")
    for replica in pg_cluster.replicas:
        pg_cluster.pause(replica["name"])
    try:
        yield pg_cluster
    finally:
        pg_cluster.restore()


def settings_for(cluster: PgCluster, redis_url: str) -> Settings:
    base = cluster.settings(health_check_interval=0.2)
    return base.model_copy(update={
        "redis": base.redis.model_copy(update={"url": redis_url}),
        "queues": base.queues.model_copy(update={"jobs_module": db_jobs.__name__}),
    })


def run_job(settings: Settings, name: str, value: str, token_from_write: bool) -> dict:
    async def main() -> dict:
        router = router_from_settings(settings)
        assert router is not None
        await router.start()
        client = QueueClient(settings)
        try:
            if token_from_write:
                # The "request": a write through the router, then an enqueue in the same context.
                async with router.write() as conn:
                    await conn.execute("INSERT INTO job_notes (value) VALUES (%s)", (value,))
                assert read_your_writes_var.get() is not None
            queued = await client.enqueue(f"{db_jobs.__name__}.{name}", value)
            read_your_writes_var.set(None)

            async def done(c: QueueClient) -> dict | None:
                job = await c.get_job(queued.id)
                return job if job and job["state"] in ("done", "dead") else None

            job = await consume_until(settings, ["high"], done, db=router)
            assert job["state"] == "done", job
            return job["result"]
        finally:
            await client.close()
            await router.close()

    read_your_writes_var.set(None)
    return run_async(main)


def test_a_job_reads_its_own_write_through_ctx_db(paused: PgCluster, redis_url: str) -> None:  # noqa: F811
    value = uuid.uuid4().hex
    result = run_job(settings_for(paused, redis_url), "write_then_read", value, token_from_write=False)
    assert result["found"] == 1
    assert result["port"] == paused.primary["port"], "with replay paused only the primary has the row"


def test_the_requests_token_travels_with_the_job(paused: PgCluster, redis_url: str) -> None:  # noqa: F811
    value = uuid.uuid4().hex
    result = run_job(settings_for(paused, redis_url), "read_note", value, token_from_write=True)
    assert result["found"] == 1, "the job's read must not land on a replica that lags the request's write"
