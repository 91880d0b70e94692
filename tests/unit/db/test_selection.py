from cluster.db.selection import HostView, pick_read_host, plan_routing, replicas_to_verify, token_lsn
from cluster.db.strategies import RoundRobin

P = HostView("p", "primary", up=True, fresh=False)


def r(name: str, up: bool = True, fresh: bool = True, lag: int | None = 0) -> HostView:
    return HostView(name, "replica", up=up, fresh=fresh, lag_bytes=lag, lag_seconds=0.0 if lag == 0 else 20.0)


def test_reads_go_to_fresh_up_replicas_only() -> None:
    routing = plan_routing([P, r("a"), r("b", up=False), r("c", fresh=False, lag=10)], "primary", True)
    assert routing.fresh_replicas == ("a",)
    assert routing.writer == "p" and routing.write_refusal is None
    assert not routing.replicas_unusable


def test_fallback_primary_then_least_lagged_or_the_other_way_round() -> None:
    views = [P, r("a", fresh=False, lag=500), r("b", fresh=False, lag=100), r("c", up=False)]
    primary_first = plan_routing(views, "primary", True)
    assert primary_first.fresh_replicas == () and primary_first.replicas_unusable
    assert primary_first.fallback == ("p", "b", "a")
    assert plan_routing(views, "least_lagged", True).fallback == ("b", "a", "p")


def test_no_primary_or_two_primaries_refuse_writes() -> None:
    down = plan_routing([HostView("p", "primary", up=False, fresh=False), r("a")], "primary", True)
    assert down.writer is None and "no reachable host claims to be primary" in down.write_refusal
    assert "down: p" in down.write_refusal
    split = plan_routing([P, HostView("a", "primary", up=True, fresh=False)], "primary", True)
    assert split.writer is None and "all claim to be primary" in split.write_refusal


def test_a_promoted_replica_becomes_the_writer_when_the_old_primary_steps_down() -> None:
    routing = plan_routing([HostView("p", "replica", up=True, fresh=True), HostView("a", "primary", up=True,
                                                                                    fresh=False)], "primary", True)
    assert routing.writer == "a" and routing.fresh_replicas == ("p",)


def test_without_replicas_configured_nothing_is_unusable() -> None:
    assert not plan_routing([P], "primary", False).replicas_unusable


def test_pick_uses_the_strategy_over_fresh_replicas_then_the_fallback() -> None:
    routing = plan_routing([P, r("a"), r("b")], "primary", True)
    rr = RoundRobin()
    assert [pick_read_host(routing, rr, {}) for _ in range(4)] == ["a", "b", "a", "b"]
    assert pick_read_host(routing, rr, {}, exclude=["a"]) == "b"
    assert pick_read_host(routing, rr, {}, exclude=["a", "b"]) == "p"
    assert pick_read_host(routing, rr, {}, exclude=["a", "b", "p"]) is None


def test_read_your_writes_keeps_replicas_that_replayed_past_the_write_else_the_primary() -> None:
    routing = plan_routing([P, r("a"), r("b"), r("c", fresh=False, lag=10)], "least_lagged", True)
    replayed = {"a": 1000, "b": 5000, "c": 9000}
    rr = RoundRobin()
    assert {pick_read_host(routing, rr, replayed, must_see=4000) for _ in range(4)} == {"b"}
    # No fresh replica has it: the primary, even though the fallback order puts stale replicas first.
    assert pick_read_host(routing, rr, replayed, must_see=6000) == "p"


def test_token_lsn_honours_the_sticky_window_and_ignores_mangled_tokens() -> None:
    token = {"lsn": "0/3000148", "at": 1000.0}
    assert token_lsn(token, now=1010.0, sticky_window=30) == 0x3000148
    assert token_lsn(token, now=1031.0, sticky_window=30) is None
    assert token_lsn({"lsn": "nonsense", "at": 1000.0}, 1001.0, 30) is None
    assert token_lsn({"lsn": "0/1"}, 1001.0, 30) is None
    assert token_lsn("0/1", 1001.0, 30) is None


def test_read_your_writes_with_the_primary_down_still_reads_somewhere() -> None:
    routing = plan_routing([HostView("p", "primary", up=False, fresh=False), r("a"), r("b", fresh=False, lag=9)],
                           "primary", True)
    assert pick_read_host(routing, RoundRobin(), {"a": 10, "b": 10}, must_see=4000) == "b"
    assert pick_read_host(routing, RoundRobin(), {"a": 10, "b": 10}, must_see=4000, exclude=["b"]) == "a"


def test_replicas_are_verified_only_when_none_is_known_past_the_write() -> None:
    routing = plan_routing([P, r("a"), r("b"), r("c", up=False)], "primary", True)
    assert replicas_to_verify(routing, {"a": 10, "b": 20}, must_see=30) == ["a", "b"]
    assert replicas_to_verify(routing, {"a": 10, "b": 30}, must_see=30) == []
    assert replicas_to_verify(plan_routing([P, r("a", fresh=False, lag=99)], "primary", True), {}, 30) == []
