"""Where reads and writes go, from what the health loop last saw: pure functions, no I/O.

``plan_routing`` runs when a host's state changes and produces a ``Routing`` snapshot;
``pick_read_host`` runs on every checkout against that snapshot, so the per-read work is a
filter and one strategy call.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cluster.db.freshness import parse_lsn
from cluster.db.strategies import Strategy

ObservedRole = Literal["primary", "replica", "unknown"]


@dataclass(frozen=True)
class HostView:
    """What the router knows of one host: its role as the host itself reports it, and its state."""

    name: str
    role: ObservedRole
    up: bool
    fresh: bool
    lag_bytes: int | None = None
    lag_seconds: float | None = None


@dataclass(frozen=True)
class Routing:
    fresh_replicas: tuple[str, ...]
    fallback: tuple[str, ...]
    writer: str | None
    write_refusal: str | None
    replicas_unusable: bool


def _lag_key(view: HostView) -> tuple[float, float]:
    return (
        math.inf if view.lag_bytes is None else view.lag_bytes,
        math.inf if view.lag_seconds is None else view.lag_seconds,
    )


def plan_routing(views: Sequence[HostView], fallback: Literal["primary", "least_lagged"],
                 replicas_configured: bool) -> Routing:
    """The snapshot reads and writes are routed by.

    Writes go to the one reachable host that claims to be primary; with none, or with two
    (split brain), writes are refused. Reads go to reachable, fresh replicas; when there is
    none, to ``fallback``: the primary then the least-lagged stale replicas, or the other way
    round. A stale replica stays a last resort either way: a read served late beats a read
    failed while the primary is down.
    """
    claimants = [v.name for v in views if v.up and v.role == "primary"]
    writer: str | None = None
    refusal: str | None = None
    if len(claimants) == 1:
        writer = claimants[0]
    elif not claimants:
        down = [v.name for v in views if not v.up]
        refusal = "no reachable host claims to be primary" + (f" (down: {', '.join(down)})" if down else "")
    else:
        refusal = f"hosts {', '.join(claimants)} all claim to be primary: writes refused until only one does"
    replicas = [v for v in views if v.up and v.role == "replica"]
    fresh = tuple(v.name for v in replicas if v.fresh)
    stale = tuple(v.name for v in sorted((v for v in replicas if not v.fresh), key=_lag_key))
    primary = (writer,) if writer else ()
    order = primary + stale if fallback == "primary" else stale + primary
    return Routing(fresh, order, writer, refusal, replicas_configured and not fresh)


def token_lsn(token: Any, now: float, sticky_window: float) -> int | None:
    """The LSN a read must see, from a read-your-writes token still inside its sticky window.

    The token is ``{"lsn": "X/Y", "at": unix time}``; anything else (a token from another
    version, or mangled in a job payload) is ignored rather than failing the read.
    """
    if not isinstance(token, Mapping):
        return None
    at, lsn = token.get("at"), token.get("lsn")
    if not isinstance(at, (int, float)) or not isinstance(lsn, str) or now - at > sticky_window:
        return None
    try:
        return parse_lsn(lsn)
    except ValueError:
        return None


def pick_read_host(routing: Routing, strategy: Strategy, replayed: Mapping[str, int | None],
                   must_see: int | None = None, exclude: Collection[str] = ()) -> str | None:
    """The host for one read, or None when no host is left to try.

    ``must_see`` (read-your-writes) keeps only replicas known to have replayed that far; with
    none, the read goes to the primary, and only with the primary down to the other hosts.
    """
    candidates: Sequence[str] = routing.fresh_replicas
    fallback: Sequence[str] = routing.fallback
    if must_see is not None:
        seen = [n for n in candidates if (replayed.get(n) or -1) >= must_see]
        # The primary first; with it down, a replica that may not have the write beats no read.
        others = [n for n in (*fallback, *candidates) if n != routing.writer]
        fallback = [routing.writer, *others] if routing.writer else others
        candidates = seen
    if exclude:
        candidates = [n for n in candidates if n not in exclude]
    if candidates:
        return strategy.choose(candidates)
    for name in fallback:
        if name not in exclude:
            return name
    return None


def replicas_to_verify(routing: Routing, replayed: Mapping[str, int | None], must_see: int) -> list[str]:
    """Fresh replicas worth asking how far they have replayed, before a read-your-writes read
    falls back to the primary: none when one is already known to be past ``must_see``."""
    if any((replayed.get(n) or -1) >= must_see for n in routing.fresh_replicas):
        return []
    return list(routing.fresh_replicas)
