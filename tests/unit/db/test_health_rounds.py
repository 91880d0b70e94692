"""The router's health rounds, fed probe results by hand: no database, no sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

from cluster.config.settings import DatabaseSettings, ReplicaSettings
from cluster.db.hosts import HostSpec
from cluster.db.probe import ProbeResult
from cluster.db.router import Router

MB = 1024 * 1024
DOWN = ProbeResult(False, error="OperationalError: connection refused")


class FakePool:
    """Stands in for a pool: the rounds only ask it for counts and to drop dead connections."""

    def __init__(self) -> None:
        self.checks = 0

    def get_stats(self) -> dict[str, int]:
        return {"pool_size": 1, "pool_available": 1, "pool_max": 4, "requests_waiting": 0}

    async def check(self) -> None:
        self.checks += 1


def make_router(**database: Any) -> Router:
    settings = DatabaseSettings(url="postgresql://p/db", replicas=[ReplicaSettings(url="postgresql://a/db"),
                                                                   ReplicaSettings(url="postgresql://b/db")],
                                max_lag_seconds=10, max_lag_bytes=8 * MB, **database)
    specs = [HostSpec("p", "postgresql://p/db", "primary", 1), HostSpec("a", "postgresql://a/db", "replica", 1),
             HostSpec("b", "postgresql://b/db", "replica", 1)]
    router = Router(settings, specs)
    for host in router.hosts:
        host.pool = FakePool()  # type: ignore[assignment]
    return router


def primary(lsn: int) -> ProbeResult:
    return ProbeResult(True, in_recovery=False, lsn=lsn)


def replica(lsn: int, age: float | None = None) -> ProbeResult:
    return ProbeResult(True, in_recovery=True, lsn=lsn, replay_age=age)


def round_(router: Router, now: float, *results: ProbeResult, first: bool = False) -> None:
    asyncio.run(router.apply_round(list(zip(router.hosts, results)), now, first))


def test_a_replica_behind_the_primary_for_long_and_far_goes_stale_then_fresh_again() -> None:
    router = make_router()
    round_(router, 100.0, primary(1 * MB), replica(1 * MB), replica(1 * MB), first=True)
    assert router.routing.fresh_replicas == ("a", "b")
    round_(router, 115.0, primary(30 * MB), replica(30 * MB), replica(1 * MB))
    # b is 29 MB behind since the primary passed it at 115: 0 s so far, so still fresh (either limit).
    assert router.routing.fresh_replicas == ("a", "b")
    round_(router, 130.0, primary(30 * MB), replica(30 * MB), replica(1 * MB, age=3600))
    b = router.by_name["b"]
    assert (b.state, b.lag_bytes, b.lag_seconds) == ("stale", 29 * MB, 15.0)
    assert router.routing.fresh_replicas == ("a",)
    round_(router, 145.0, primary(30 * MB), replica(30 * MB), replica(30 * MB, age=3600))
    assert router.routing.fresh_replicas == ("a", "b") and b.lag_seconds == 0.0


def test_an_idle_primary_does_not_make_caught_up_replicas_stale() -> None:
    router = make_router()
    for now in (100.0, 200.0, 5000.0):
        round_(router, now, primary(MB), replica(MB, age=now), replica(MB, age=now), first=now == 100.0)
    assert router.routing.fresh_replicas == ("a", "b")


def test_two_failed_rounds_take_a_host_out_and_two_good_ones_bring_it_back_with_its_pool_checked() -> None:
    router = make_router()
    round_(router, 0.0, primary(MB), replica(MB), replica(MB), first=True)
    round_(router, 1.0, primary(MB), DOWN, replica(MB))
    assert router.by_name["a"].state == "up"
    round_(router, 2.0, primary(MB), DOWN, replica(MB))
    assert router.by_name["a"].state == "down" and router.routing.fresh_replicas == ("b",)
    round_(router, 3.0, primary(MB), replica(MB), replica(MB))
    assert router.by_name["a"].state == "down"
    round_(router, 4.0, primary(MB), replica(MB), replica(MB))
    assert router.by_name["a"].state == "up" and router.routing.fresh_replicas == ("a", "b")
    assert router.by_name["a"].pool.checks == 2  # type: ignore[attr-defined]


def test_a_host_down_at_start_is_out_from_the_first_round() -> None:
    router = make_router()
    round_(router, 0.0, primary(MB), DOWN, replica(MB), first=True)
    assert router.by_name["a"].state == "down" and router.routing.fresh_replicas == ("b",)


def test_roles_follow_what_the_hosts_report_and_two_primaries_refuse_writes() -> None:
    router = make_router()
    round_(router, 0.0, primary(MB), replica(MB), replica(MB), first=True)
    assert router.routing.writer == "p"
    round_(router, 1.0, primary(MB), primary(2 * MB), replica(MB))
    assert router.routing.writer is None and "all claim to be primary" in router.routing.write_refusal
    round_(router, 2.0, replica(2 * MB), primary(2 * MB), replica(2 * MB))
    assert router.routing.writer == "a" and router.routing.fresh_replicas == ("p", "b")


def test_without_the_primary_replicas_are_measured_against_its_last_position() -> None:
    router = make_router()
    round_(router, 0.0, primary(40 * MB), replica(40 * MB), replica(40 * MB), first=True)
    round_(router, 20.0, DOWN, replica(40 * MB), replica(10 * MB))
    round_(router, 40.0, DOWN, replica(40 * MB), replica(10 * MB))
    assert router.routing.writer is None
    assert router.routing.fresh_replicas == ("a",) and router.by_name["b"].lag_bytes == 30 * MB
