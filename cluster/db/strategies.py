"""How a read picks one host among the usable ones: pure, deterministic, unit-tested without I/O.

Each strategy is called once per checkout with the names of the hosts that may serve it (never
empty) and returns one of them. The candidate set changes as hosts go down, fall behind or are
excluded after a failed attempt; strategies must cope with any subset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol


class Strategy(Protocol):
    def choose(self, candidates: Sequence[str]) -> str: ...


class RoundRobin:
    """Each candidate in turn."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[str]) -> str:
        choice = candidates[self._next % len(candidates)]
        self._next += 1
        return choice


class LeastConnections:
    """The candidate with the fewest connections in use (``load`` reads the pools' own counts).

    Ties rotate, so idle hosts share the work instead of the first one taking all of it.
    """

    def __init__(self, load: Callable[[str], int]) -> None:
        self._load = load
        self._next = 0

    def choose(self, candidates: Sequence[str]) -> str:
        count = len(candidates)
        start = self._next % count
        self._next += 1
        best = candidates[start]
        best_load = self._load(best)
        for offset in range(1, count):
            name = candidates[(start + offset) % count]
            load = self._load(name)
            if load < best_load:
                best, best_load = name, load
        return best


class SmoothWeighted:
    """nginx's smooth weighted round robin: weights 3/3/2 give a b a c b a b c, never a a a b b b c c.

    Every pick adds each candidate's weight to its running score, takes the highest score and
    subtracts the candidates' total weight from it. Hosts outside the candidate set keep their
    score untouched, so they rejoin without a burst.
    """

    def __init__(self, weights: Mapping[str, int]) -> None:
        self._weights = dict(weights)
        self._current = dict.fromkeys(self._weights, 0)

    def choose(self, candidates: Sequence[str]) -> str:
        current, weights = self._current, self._weights
        total = 0
        best = candidates[0]
        best_score = None
        for name in candidates:
            weight = weights.get(name, 1)
            total += weight
            score = current.get(name, 0) + weight
            current[name] = score
            if best_score is None or score > best_score:
                best, best_score = name, score
        current[best] -= total
        return best


def make_strategy(name: str, weights: Mapping[str, int], load: Callable[[str], int]) -> Strategy:
    """The strategy called ``name`` in the settings (``database.strategy``)."""
    if name == "round_robin":
        return RoundRobin()
    if name == "least_connections":
        return LeastConnections(load)
    if name == "weighted":
        return SmoothWeighted(weights)
    raise ValueError(f"unknown strategy {name!r}: expected round_robin, least_connections or weighted")
