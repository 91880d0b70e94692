"""A host's transition on one health check, as a pure function: no Router, no pool, no clock."""

from __future__ import annotations

from cluster.db.health_state import HostHealth
from cluster.db.probe import ProbeResult
from cluster.db.transitions import HostRecord, LagLimits, primary_position, transition

MB = 1024 * 1024
LIMITS = LagLimits(max_seconds=10, max_bytes=8 * MB)


def replica_record(**fields: object) -> HostRecord:
    return HostRecord(**{"role": "replica", "health": HostHealth(), "fresh": True, **fields})  # type: ignore[arg-type]


def test_a_replica_far_behind_for_longer_than_the_limit_goes_stale() -> None:
    samples = [(100.0, 30 * MB)]
    step = transition("b", replica_record(), ProbeResult(True, in_recovery=True, lsn=MB, replay_age=3600),
                      30 * MB, samples, 130.0, LIMITS)
    assert (step.record.fresh, step.record.lag_bytes, step.record.lag_seconds) == (False, 29 * MB, 30.0)
    assert step.warnings == ("replica b is stale (lag 30408704 bytes, 30.0 s)",) and not step.check_pool


def test_the_input_record_is_left_alone_and_a_failure_counts_toward_down() -> None:
    before = replica_record(lsn=5)
    down = ProbeResult(False, error="refused")
    once = transition("a", before, down, None, [], 1.0, LIMITS)
    twice = transition("a", once.record, down, None, [], 2.0, LIMITS)
    assert before.health.up and before.checked_at is None
    assert once.record.health.up and not twice.record.health.up
    assert twice.warnings == ("database host a down after failed checks: refused",)
    assert twice.record.lsn == 5 and twice.record.last_error == "refused" and twice.record.checked_at == 2.0


def test_an_answer_from_a_down_host_checks_its_pool_and_a_role_change_is_noted() -> None:
    down = replica_record(health=HostHealth(up=False))
    step = transition("a", down, ProbeResult(True, in_recovery=False, lsn=7 * MB), 7 * MB, [], 3.0, LIMITS)
    assert step.check_pool and step.record.role == "primary" and step.record.lag_bytes is None
    assert not step.record.fresh and "now reports itself primary (was replica)" in step.warnings[0]


def test_the_primary_position_is_the_most_advanced_primary_of_the_round() -> None:
    results = [ProbeResult(True, in_recovery=False, lsn=3, block_size=4096),
               ProbeResult(True, in_recovery=True, lsn=9), ProbeResult(False)]
    assert primary_position(results) == (3, 4096)
    assert primary_position([ProbeResult(False)]) is None
