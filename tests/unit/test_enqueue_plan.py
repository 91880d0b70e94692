"""The enqueue plan without Redis: what a request becomes (queue, id, envelope, due time, script calls) and
what the script's replies become (Enqueued, QueueFull, RedisFull, EnqueueUnknown)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.exceptions import OutOfMemoryError, ResponseError

from cluster.config import Settings
from cluster.queues import registry
from cluster.queues.connection import RedisFull
from cluster.queues.enqueue_plan import (ENQUEUE_CHUNK, QUEUED_JOB_TTL, Enqueued, EnqueuePlan, EnqueueUnknown,
                                         JobRequest, QueueFull, single)
from cluster.queues.envelope import FIELD, decode, request_context
from cluster.queues.keys import QueueKeys

NOW = 1_700_000_000.25
CONTEXT = request_context("req-1", None)


@pytest.fixture
def jobs() -> Iterator[None]:
    """Two jobs registered for the test: ``plan.mail`` (high, 3 retries) and ``plan.report`` (the pool's retries)."""
    registry.job("plan.mail", priority="high", retries=3)(lambda to: None)
    registry.job("plan.report", priority="low")(lambda: None)
    yield
    for name in ("plan.mail", "plan.report"):
        registry.REGISTRY.pop(name, None)


def plan_of(settings: dict | None = None) -> tuple[EnqueuePlan, list[tuple[str, int]]]:
    counted: list[tuple[str, int]] = []
    plan = EnqueuePlan(Settings.model_validate(settings or {}), lambda priority, n: counted.append((priority, n)))
    return plan, counted


def test_a_request_becomes_its_queue_id_envelope_and_due_time(jobs: None) -> None:
    plan, _ = plan_of()
    queue, job_id, payload, due = plan.prepare("plan.mail", ("a@example.com",), {}, None, 30, None, "mail-1", NOW,
                                               CONTEXT)
    assert (queue, job_id, due) == ("high", "mail-1", NOW + 30)
    envelope = decode({FIELD: payload})
    assert (envelope.id, envelope.name, envelope.priority, envelope.args, envelope.max_retries) == \
        ("mail-1", "plan.mail", "high", ["a@example.com"], 3)
    assert (envelope.enqueued_at, envelope.not_before, envelope.request_id) == (NOW, NOW + 30, "req-1")


def test_the_queue_can_be_chosen_and_the_pool_gives_the_retries(jobs: None) -> None:
    plan, _ = plan_of({"queues": {"medium": {"retries": 7}}})
    queue, job_id, payload, due = plan.prepare("plan.report", (), {}, "medium", None, NOW + 5, None, NOW, CONTEXT)
    assert (queue, due, decode({FIELD: payload}).max_retries) == ("medium", NOW + 5, 7)
    assert len(job_id) == 32  # a fresh id when none is given


@pytest.mark.parametrize(("name", "priority", "delay", "at", "job_id", "error", "says"), [
    ("plan.mail", None, 1, NOW + 1, None, ValueError, "delay or at"),
    ("plan.mail", "urgent", None, None, None, ValueError, "priority must be one of"),
    ("plan.mail", None, -1, None, None, ValueError, "delay must be"),
    ("plan.mail", None, None, None, "no spaces", ValueError, "job"),
    ("plan.nothing", None, None, None, None, registry.UnknownJob, "plan.nothing"),
])
def test_a_bad_request_is_rejected_before_any_write(jobs: None, name: str, priority: str | None,
                                                    delay: float | None, at: float | None, job_id: str | None,
                                                    error: type[Exception], says: str) -> None:
    plan, _ = plan_of()
    with pytest.raises(error, match=says):
        plan.one(name, ("x",), {}, priority, delay, at, job_id, NOW, CONTEXT)


def test_a_name_registered_again_gets_its_new_spec(jobs: None) -> None:
    plan, _ = plan_of()
    assert plan.one("plan.report", (), {}, None, None, None, None, NOW, CONTEXT).priority == "low"
    registry.REGISTRY.pop("plan.report")  # as a test's re-import of a jobs module does
    registry.job("plan.report", priority="background")(lambda: None)
    assert plan.one("plan.report", (), {}, None, None, None, None, NOW, CONTEXT).priority == "background"


def test_one_script_call_per_queue_and_chunk_in_batch_order(jobs: None) -> None:
    plan, _ = plan_of({"queues": {"high": {"max_size": 50}}})
    requests = [JobRequest("plan.mail", ("a",), job_id=f"m{i}") for i in range(ENQUEUE_CHUNK + 1)]
    requests.insert(1, JobRequest("plan.report", job_id="r0", delay=2))
    outcomes, calls = plan.batch(requests, NOW, CONTEXT)
    assert outcomes == [None] * len(requests)
    assert [(c.priority, len(c.ids)) for c in calls] == [("high", ENQUEUE_CHUNK), ("low", 1), ("high", 1)]
    first, report, last = calls
    keys = QueueKeys("high")
    assert first.keys == [keys.stream, keys.delayed, keys.stats]
    assert first.argv[:5] == [50, int(NOW * 1000), FIELD, keys.job_prefix, QUEUED_JOB_TTL]
    assert first.positions[:2] == [0, 2] and report.positions == [1] and last.positions == [ENQUEUE_CHUNK + 1]
    job_id, due_ms, payload = report.argv[5].split(" ", 2)
    assert (job_id, int(due_ms), decode({FIELD: payload}).name) == ("r0", int((NOW + 2) * 1000), "plan.report")


def test_a_batch_keeps_each_rejection_in_its_place(jobs: None) -> None:
    plan, _ = plan_of()
    outcomes, calls = plan.batch([JobRequest("plan.nothing"), JobRequest("plan.mail", ("a",)),
                                  JobRequest("plan.mail", delay=-5)], NOW, CONTEXT)
    assert isinstance(outcomes[0], registry.UnknownJob) and outcomes[1] is None
    assert isinstance(outcomes[2], ValueError)
    assert [c.positions for c in calls] == [[1]]


def test_replies_become_outcomes_and_only_added_jobs_are_counted(jobs: None) -> None:
    plan, counted = plan_of({"queues": {"high": {"max_size": 9}}})
    outcomes, calls = plan.batch([JobRequest("plan.mail", ("a",), job_id=i) for i in ("new", "old", "over")],
                                 NOW, CONTEXT)
    settled = plan.settle(calls, [[1, "queued", 0, "done", -1, "ready"]], outcomes)
    assert settled[:2] == [Enqueued("new", "high", "queued", created=True), Enqueued("old", "high", "done", False)]
    assert isinstance(settled[2], QueueFull) and (settled[2].max_size, settled[2].priority) == (9, "high")
    assert "9 ready jobs" in str(settled[2])
    assert counted == [("high", 1)]


def test_a_full_redis_refuses_every_job_of_the_call_and_other_errors_raise(jobs: None) -> None:
    plan, counted = plan_of()
    outcomes, calls = plan.batch([JobRequest("plan.mail", ("a",)), JobRequest("plan.report")], NOW, CONTEXT)
    settled = plan.settle(calls, [OutOfMemoryError("OOM"), [1, "queued"]], outcomes)
    assert isinstance(settled[0], RedisFull) and isinstance(settled[1], Enqueued)
    assert counted == [("low", 1)]
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        plan.settle(calls, [ResponseError("WRONGTYPE"), [1, "queued"]], [None, None])


def test_writes_short_of_the_wanted_replicas_are_unknown_with_their_id(jobs: None) -> None:
    plan, counted = plan_of({"redis": {"url": "redis://:secret@db:6379/0", "wait_replicas": 2}})
    call = plan.one("plan.mail", ("a",), {}, None, None, None, "mail-9", NOW, CONTEXT)
    [outcome] = plan.settle([call], [[1, "queued"]], [None], replicas=1)
    assert isinstance(outcome, EnqueueUnknown) and outcome.job_id == "mail-9"
    assert "1 of 2 replicas" in str(outcome) and "secret" not in str(outcome)
    assert counted == []
    [confirmed] = plan.settle([call], [[1, "queued"]], [None], replicas=2)
    assert confirmed == Enqueued("mail-9", "high", "queued", created=True)


def test_single_returns_the_enqueued_job_or_raises_what_rejected_it() -> None:
    job = Enqueued("j", "low", "queued", True)
    assert single([job]) is job
    with pytest.raises(QueueFull):
        single([QueueFull("low", 3, "ready")])
