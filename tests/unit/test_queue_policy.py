"""Pure queue logic: backoff, leases, crash verdicts, consumer names, envelope decoding, Redis eviction checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.supervisor.queue_tier import eviction_problems
from cluster.config.settings import QueueSettings
from cluster.queues.envelope import FIELD, DecodeError, Envelope, decode
from cluster.queues.failures import Failure, decide, queue_writes
from cluster.queues.keys import GROUP, QueueKeys
from cluster.queues import identity
from cluster.queues.policy import CRASH_LIMIT, backoff_delay, crashed_out, lease_seconds, reap_interval, should_retry


def test_backoff_doubles_with_bounded_jitter() -> None:
    assert backoff_delay(1, 2.0, 3600, rand=0.0) == 2.0
    assert backoff_delay(2, 2.0, 3600, rand=0.0) == 4.0
    assert backoff_delay(3, 2.0, 3600, rand=0.999) == pytest.approx(8.0 * 1.4995)
    assert backoff_delay(40, 2.0, 3600, rand=0.0) == 3600


@given(st.integers(1, 30), st.floats(0, 0.999), st.floats(0, 0.999))
def test_backoff_never_shrinks_from_one_attempt_to_the_next(attempt: int, r1: float, r2: float) -> None:
    assert backoff_delay(attempt + 1, 1.0, 1e9, rand=r2) >= backoff_delay(attempt, 1.0, 1e9, rand=r1)


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, 1.0, 10)


def test_retries_allow_one_plus_max_runs() -> None:
    assert [should_retry(a, 2) for a in (1, 2, 3)] == [True, True, False]
    assert not should_retry(1, 0)


def test_lease_outlives_the_longest_timeout_plus_grace() -> None:
    assert lease_seconds(5, [None, 12.0], kill_grace=5) == 12 + 5 + 1
    assert lease_seconds(5, [], kill_grace=0) == 6
    assert 0.5 <= reap_interval(1.0) <= reap_interval(100.0) == 5.0


def test_a_job_is_dead_lettered_only_after_crashing_its_consumer_the_limit_of_times() -> None:
    assert [crashed_out(n) for n in range(CRASH_LIMIT + 1)] == [False] * CRASH_LIMIT + [True]


def test_consumer_names_tell_a_dead_local_process_from_a_foreign_name() -> None:
    prefix = identity.local_prefix()
    assert identity.local_pid(identity.consumer_name(), prefix) == os.getpid()
    assert identity.local_pid("otherhost-4026531836-12", prefix) is None
    assert identity.local_pid(prefix + "x12", prefix) is None
    assert not identity.is_dead(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert identity.is_dead(child.pid)


def _fields(**overrides: object) -> dict[str, str]:
    data = {"id": "j1", "name": "x", "priority": "high", "args": [1], "kwargs": {}, "attempt": 1,
            "max_retries": 3, "enqueued_at": 1.0, "not_before": 1.0, **overrides}
    return {"job": json.dumps(data)}


def test_decode_round_trip() -> None:
    envelope = Envelope(id="j1", name="x", priority="low", args=[1, "a"], kwargs={"k": None}, max_retries=2,
                        request_id="r", read_your_writes={"lsn": "0/1"})
    assert decode({"job": envelope.encode()}) == envelope
    assert envelope.next_attempt(5.0).attempt == 2
    assert decode({"job": envelope.after_crash(2).encode()}).crashes == 2


@pytest.mark.parametrize("fields, problem", [
    ({}, "no 'job'"),
    ({"job": "{"}, "not JSON"),
    ({"job": "[1]"}, "not an object"),
    (_fields(attempt="1"), "wrong type"),
    (_fields(attempt=True), "wrong type"),
    (_fields(priority="urgent"), "unknown priority"),
    (_fields(crashes=-1), "not a count"),
    ({"job": json.dumps({"id": "j"})}, "has no 'name'"),
])
def test_decode_says_what_is_wrong(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        decode(fields)


def test_eviction_problems() -> None:
    assert eviction_problems("noeviction", "7.0.15") == []
    assert "evict" in eviction_problems("allkeys-lru", "7.2.0")[0]
    assert "older than 7.0" in eviction_problems(None, "6.2.6")[0]


def _failure(reason: str = "failed", attempt: int = 1, max_retries: int = 2, crashes: int = 0) -> Failure:
    envelope = Envelope(id="j1", name="m.f", priority="high", attempt=attempt, max_retries=max_retries,
                        crashes=crashes)
    return Failure("1-0", "boom", envelope=envelope, reason=reason)


@pytest.mark.parametrize(("failure", "outcome", "reason"), [
    (_failure(attempt=1, max_retries=2), "retry", "failed"),
    (_failure(attempt=3, max_retries=2), "dead", "retries exhausted"),
    (_failure("timeout", attempt=1, max_retries=1), "retry", "timeout"),
    (_failure("timeout", attempt=2, max_retries=1), "dead", "timeout"),
    (_failure("result is not JSON", attempt=1, max_retries=5), "failed", "result is not JSON"),
    (_failure("crashed", crashes=CRASH_LIMIT - 1), "requeue", "crashed"),
    (_failure("crashed", crashes=CRASH_LIMIT), "dead", f"crashed its consumer {CRASH_LIMIT} times"),
    (Failure("1-0", "undecodable payload", raw="{", reason="undecodable"), "dead", "undecodable"),
])
def test_a_failure_is_retried_run_again_kept_or_dead_lettered(failure: Failure, outcome: str, reason: str) -> None:
    decide(failure)
    assert (failure.outcome, failure.reason) == (outcome, reason)


class RecordingPipe:
    """Records pipeline calls by name (the writes are plain pipeline calls: no Redis needed to read them)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


@pytest.mark.parametrize(("failure", "writes"), [
    (_failure(attempt=1), ["hincrby", "hset", "expire", "zadd", "hincrby", "xack", "xdel"]),
    (_failure("crashed", crashes=1), ["xadd", "hset", "expire", "hincrby", "xack", "xdel"]),
    (_failure(attempt=3), ["hincrby", "xadd", "hincrby", "hset", "expire", "xack", "xdel"]),
    (Failure("1-0", "undecodable payload", raw="{", reason="undecodable"), ["xadd", "hincrby", "xack", "xdel"]),
])
def test_every_outcome_acknowledges_its_entry(failure: Failure, writes: list[str]) -> None:
    """Also: a failed run counts as a failed attempt, the last one (retries exhausted) too."""
    decide(failure)
    pipe = RecordingPipe()
    queue_writes(pipe, failure, QueueKeys("high"), QueueSettings(), 1000.0)
    assert [name for name, _args, _kwargs in pipe.calls] == writes
    assert pipe.calls[-2][1] == (QueueKeys("high").stream, GROUP, "1-0")
    if failure.outcome == "dead":
        dead = next(args[1] for name, args, _ in pipe.calls if name == "xadd")
        assert dead["reason"] == failure.reason and dead[FIELD] == (failure.raw or failure.envelope.encode())
