"""The take-over policy (cluster.supervisor.takeover): what a start waits for, how long, when it gives up."""

from __future__ import annotations

from cluster.supervisor.takeover import GO, REFUSE, WAIT, judge, releasing, wait_limit

TREE = frozenset({100, 101, 102})
ADDRESS = "127.0.0.1:8000"


def test_nothing_held_goes_at_once() -> None:
    assert judge({}, TREE, 0.0, 8.0).action == GO
    assert judge({}, frozenset(), 99.0, 8.0).action == GO


def test_a_port_held_by_the_previous_tree_is_waited_for_and_the_line_names_pids_and_address() -> None:
    verdict = judge({ADDRESS: frozenset({101, 102})}, TREE, 1.5, 8.0)
    assert verdict.action == WAIT
    assert verdict.line == f"waiting up to 8 s for the previous tree (pids 101, 102) to release {ADDRESS}"


def test_the_previous_tree_is_given_up_on_once_the_limit_has_passed() -> None:
    verdict = judge({ADDRESS: frozenset({101})}, TREE, 8.0, 8.0)
    assert verdict.action == REFUSE
    assert "(pids 101) still holds 127.0.0.1:8000 after 8 s" in verdict.line


def test_any_other_holder_is_refused_at_once_and_named() -> None:
    verdict = judge({ADDRESS: frozenset({101, 555})}, TREE, 0.0, 8.0)
    assert verdict.action == REFUSE
    assert verdict.line == f"{ADDRESS}: cannot bind (Address already in use; pids 101, 555 listen on it)"
    # With no previous tree (none left, or a live supervisor's tree), our own kind is no exception.
    assert judge({ADDRESS: frozenset({101})}, frozenset(), 0.0, 8.0).action == REFUSE


def test_a_socket_we_cannot_see_the_owner_of_is_never_the_previous_trees() -> None:
    assert not releasing(frozenset({101, None}), TREE)
    verdict = judge({ADDRESS: frozenset({None})}, TREE, 0.0, 8.0)
    assert verdict.action == REFUSE and verdict.line.endswith("(Address already in use)")


def test_a_port_in_use_with_no_listener_seen_waits_only_while_the_tree_runs() -> None:
    # The tree is closing its sockets between our bind and our look at the listeners.
    assert judge({ADDRESS: frozenset()}, TREE, 0.5, 8.0).action == WAIT
    assert judge({ADDRESS: frozenset()}, frozenset(), 0.5, 8.0).action == REFUSE


def test_every_held_address_must_be_the_trees() -> None:
    held = {ADDRESS: frozenset({101}), "127.0.0.1:9100": frozenset({777})}
    verdict = judge(held, TREE, 0.0, 8.0)
    assert verdict.action == REFUSE and verdict.line.startswith("127.0.0.1:9100:")
    both = judge({ADDRESS: frozenset({101}), "127.0.0.1:9100": frozenset({100})}, TREE, 0.0, 8.0)
    assert both.action == WAIT and "(pids 100, 101) to release 127.0.0.1:8000, 127.0.0.1:9100" in both.line


def test_the_wait_covers_the_old_workers_drain_within_their_own_stop_bound() -> None:
    assert wait_limit(keepalive=5, graceful_timeout=30) == 8.0
    assert wait_limit(keepalive=60, graceful_timeout=30) == 30.0
    assert wait_limit(keepalive=0, graceful_timeout=30) == 3.0
