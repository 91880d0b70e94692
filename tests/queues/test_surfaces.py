"""The CLI's dead letter and enqueue commands, the HTTP tier with the queue tier off, Redis down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cluster.config import Settings
from cluster.queues.client import QueueClient
from cluster.queues.connection import QueueUnavailable
from tests.queues.helpers import consume_until
from tests.support import free_port, run_async, run_cli
from cluster.workers.app import build_app

pytestmark = pytest.mark.integration


def _state_dir(tmp_path: Path, settings: Settings) -> str:
    """A state dir as a running cluster leaves it: the CLI reads the effective settings from it."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "settings.json").write_text(settings.model_dump_json())
    return str(state)


def _until_state(job_id: str, state: str) -> Callable[[QueueClient], object]:
    async def check(client: QueueClient) -> bool:
        job = await client.get_job(job_id)
        return bool(job and job["state"] == state)

    return check


def test_cli_enqueue_and_dead_letter_requeue_and_purge(make_settings: Callable[..., Settings],
                                                         tmp_path: Path) -> None:
    settings = make_settings()
    state = _state_dir(tmp_path, settings)

    added = run_cli("queues", "enqueue", "tests.queues.jobs.add", "--args", "[20, 22]", "--state-dir", state)
    assert added.returncode == 0, added.stderr
    add_id = json.loads(added.stdout)["id"]
    unknown = run_cli("queues", "enqueue", "no.such.job", "--state-dir", state)
    assert unknown.returncode == 2 and "no.such.job" in unknown.stderr
    failing = json.loads(run_cli("queues", "enqueue", "tests.queues.jobs.always_fails", "--state-dir", state).stdout)

    async def run_all() -> None:
        await consume_until(settings, ["medium"], _until_state(failing["id"], "dead"))
        client = QueueClient(settings)
        assert (await client.get_job(add_id))["result"] == 42
        await client.close()

    run_async(run_all)
    listed = json.loads(run_cli("queues", "dead", "--json", "--state-dir", state).stdout)
    assert [(e["job_id"], e["reason"]) for e in listed] == [(failing["id"], "retries exhausted")]
    assert "this job always fails" in listed[0]["error"] and "Traceback" in listed[0]["traceback"]

    requeued = run_cli("queues", "dead", "--requeue", failing["id"], "--state-dir", state)
    assert requeued.stdout.strip() == "requeued 1", requeued.stderr
    assert "--requeue JOB_ID is deprecated" in requeued.stderr and "use --retry ENTRY_ID" in requeued.stderr
    assert json.loads(run_cli("queues", "dead", "--json", "--state-dir", state).stdout) == []
    asyncio.run(consume_until(settings, ["medium"], _until_state(failing["id"], "dead")))
    assert run_cli("queues", "dead", "--purge", "--state-dir", state).stdout.strip() == "purged 1"
    status = json.loads(run_cli("queues", "status", "--json", "--state-dir", state).stdout)
    assert status["medium"]["dead"] == 2 and status["medium"]["dead_letter_size"] == 0
    assert status["medium"]["processed"] == 1
    # two runs (retries=0), each a failed attempt although it was the last
    assert (status["medium"]["failed"], status["medium"]["retried"]) == (2, 0)


def test_cli_dead_letter_retry_and_delete_without_a_supervisor_act_on_redis(make_settings: Callable[..., Settings],
                                                                             tmp_path: Path) -> None:
    """The one verb set (--retry, --retry-all, --delete) with no control socket in the state dir: straight on
    Redis, as the supervisor would; the old --requeue-all still works and says what replaces it."""
    settings = make_settings()
    state = _state_dir(tmp_path, settings)
    failing = json.loads(run_cli("queues", "enqueue", "tests.queues.jobs.always_fails", "--state-dir", state).stdout)

    def dead_entry() -> str:
        asyncio.run(consume_until(settings, ["medium"], _until_state(failing["id"], "dead")))
        [entry] = json.loads(run_cli("queues", "dead", "--json", "--state-dir", state).stdout)
        assert entry["job_id"] == failing["id"]
        return str(entry["entry"])

    entry = dead_entry()
    assert entry in run_cli("queues", "dead", "--state-dir", state).stdout  # the table shows what --retry takes
    retried = run_cli("queues", "dead", "--retry", entry, "--queue", "medium", "--state-dir", state)
    assert json.loads(retried.stdout) == {"queue": "medium", "retried": 1}, retried.stderr
    dead_entry()
    all_of = run_cli("queues", "dead", "--retry-all", "--name", "tests.queues.jobs.always_fails", "--state-dir", state)
    assert all_of.stdout.strip() == "retried 1", all_of.stderr
    dead_entry()
    old = run_cli("queues", "dead", "--requeue-all", "--state-dir", state)
    assert old.stdout.strip() == "requeued 1" and "--requeue-all is deprecated" in old.stderr
    assert "use --retry-all" in old.stderr
    entry = dead_entry()
    deleted = run_cli("queues", "dead", "--delete", entry, "--queue", "medium", "--state-dir", state)
    assert json.loads(deleted.stdout) == {"queue": "medium", "deleted": 1}, deleted.stderr
    again = run_cli("queues", "dead", "--delete", entry, "--queue", "medium", "--state-dir", state)
    assert again.returncode == 1 and f"no dead entry {entry}" in again.stderr
    no_queue = run_cli("queues", "dead", "--retry", entry, "--state-dir", state)
    assert no_queue.returncode == 2 and "need --queue" in no_queue.stderr


def test_http_tier_with_the_queue_tier_off_says_so() -> None:
    async def main() -> None:
        app = await build_app(Settings())
        async with TestClient(TestServer(app)) as client:
            health = await (await client.get("/health")).json()
            [check] = health["checks"]["queues"]
            assert check["status"] == "warn" and "queue tier off" in check["output"]
            response = await client.post("/api/enterprise/jobs", json={"name": "tests.queues.jobs.add"})
            assert response.status == 503 and "off" in (await response.json())["error"]

    run_async(main)


def test_enqueue_while_redis_is_down_fails_clearly() -> None:
    settings = Settings.model_validate({"redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}})

    async def main() -> None:
        client = QueueClient(settings)
        with pytest.raises(QueueUnavailable, match="unreachable"):
            await client.enqueue("tests.queues.jobs.add", 1, 2)
        await client.close()

    run_async(main)


def test_health_fails_for_a_queue_with_work_and_no_live_consumer(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(low={"workers": 0})

    async def main() -> None:
        app = await build_app(settings)
        async with TestClient(TestServer(app)) as client:
            [check] = (await (await client.get("/health")).json())["checks"]["queues"]
            assert check["status"] == "pass", check
            empty = await client.post("/api/enterprise/jobs", json={"name": "tests.queues.jobs.add", "priority": ""})
            assert empty.status == 400
            await client.post("/api/enterprise/jobs", json={"name": "tests.queues.jobs.add", "args": [1, 2],
                                                            "priority": "low"})
            [check] = (await (await client.get("/health")).json())["checks"]["queues"]
            assert check["status"] == "pass", "no consumer is expected for a queue with no workers here"
            await client.post("/api/enterprise/jobs", json={"name": "tests.queues.jobs.add", "args": [1, 2]})
            response = await client.get("/health")
            [check] = (await response.json())["checks"]["queues"]
            assert response.status == 503 and check["status"] == "fail" and "'medium'" in check["output"], check

    run_async(main)
