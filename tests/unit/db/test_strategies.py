from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.db.strategies import LeastConnections, RoundRobin, SmoothWeighted, make_strategy


def test_round_robin_takes_each_in_turn_and_copes_with_a_smaller_set() -> None:
    rr = RoundRobin()
    assert [rr.choose(["a", "b", "c"]) for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    assert {rr.choose(["a", "c"]) for _ in range(4)} == {"a", "c"}


def test_smooth_weighted_interleaves_3_3_2_like_nginx() -> None:
    sw = SmoothWeighted({"a": 3, "b": 3, "c": 2})
    picks = [sw.choose(["a", "b", "c"]) for _ in range(8)]
    assert Counter(picks) == {"a": 3, "b": 3, "c": 2}
    assert all(x != y for x, y in zip(picks, picks[1:])), f"bursty sequence {picks}"


def test_smooth_weighted_5_1_1_never_bursts_the_heavy_host_five_times() -> None:
    # nginx's own example: a a b a c a a, not a a a a a b c.
    sw = SmoothWeighted({"a": 5, "b": 1, "c": 1})
    picks = "".join(sw.choose(["a", "b", "c"]) for _ in range(7))
    assert picks == "aabacaa"


@given(st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=6), st.integers(1, 5))
def test_smooth_weighted_gives_exact_shares_over_whole_cycles(weights: list[int], cycles: int) -> None:
    names = [f"h{i}" for i in range(len(weights))]
    sw = SmoothWeighted(dict(zip(names, weights)))
    picks = Counter(sw.choose(names) for _ in range(sum(weights) * cycles))
    assert picks == {n: w * cycles for n, w in zip(names, weights)}


def test_smooth_weighted_keeps_proportions_among_the_hosts_left_when_one_is_out() -> None:
    sw = SmoothWeighted({"a": 3, "b": 3, "c": 2})
    picks = Counter(sw.choose(["b", "c"]) for _ in range(50))
    assert picks == {"b": 30, "c": 20}


def test_least_connections_prefers_the_least_loaded_host() -> None:
    load = {"a": 4, "b": 0, "c": 2}
    lc = LeastConnections(load.__getitem__)
    assert {lc.choose(["a", "b", "c"]) for _ in range(5)} == {"b"}
    assert lc.choose(["a", "c"]) == "c"


def test_least_connections_rotates_among_equally_idle_hosts() -> None:
    lc = LeastConnections(lambda name: 0)
    assert Counter(lc.choose(["a", "b", "c"]) for _ in range(9)) == {"a": 3, "b": 3, "c": 3}


def test_make_strategy_knows_the_three_names_and_rejects_others() -> None:
    assert isinstance(make_strategy("round_robin", {}, lambda n: 0), RoundRobin)
    assert isinstance(make_strategy("least_connections", {}, lambda n: 0), LeastConnections)
    assert isinstance(make_strategy("weighted", {"a": 1}, lambda n: 0), SmoothWeighted)
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("random", {}, lambda n: 0)
