"""Take-over after a crash: whether a start waits for the previous tree of its state dir to release a port.

Pure. When a supervisor is killed (``kill -9``, the OOM killer), its HTTP
tier gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``) and drains: its
arbiter and workers hold the listening ports for a second or two more. A
start on the same state dir in that window waits for them, bounded, instead
of failing to bind (under systemd: a failed start, then a restart loop).
It waits only for the previous tree: processes of this user whose arguments
name this state dir, while no supervisor answers on it
(``cluster.supervisor.leftovers.previous_tree``). Any other holder is
refused at once, named. With socket activation nothing is bound, so nothing
is waited for.

``held`` maps each address that cannot be bound now to the pids listening on
its port (None: a socket whose process we cannot see, another user's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GO, WAIT, REFUSE = "go", "wait", "refuse"
# Beyond server.keepalive, the old workers' drain: 1 s of slack (DRAIN_SLACK), up to 1 s until
# aiohttp's serve loop notices, and the exit itself.
DRAIN_MARGIN = 3.0

Holders = frozenset[int | None]


@dataclass(frozen=True)
class Verdict:
    action: str  # GO, WAIT or REFUSE
    line: str = ""  # what to log (WAIT) or the problem (REFUSE)


def wait_limit(keepalive: float, graceful_timeout: float) -> float:
    """How long a start waits: the old workers' drain, never longer than their own stop bound."""
    return min(float(graceful_timeout), keepalive + DRAIN_MARGIN)


def releasing(holders: Holders, tree: frozenset[int]) -> bool:
    """A port in use is the previous tree's to release: every listener on it is of that tree (no listener
    seen while the tree still runs: it is closing its sockets)."""
    return bool(tree) and None not in holders and holders <= tree


def _pids(pids: set[int | None]) -> str:
    return ", ".join(str(pid) for pid in sorted(p for p in pids if p is not None))


def judge(held: Mapping[str, Holders], tree: frozenset[int], elapsed: float, limit: float) -> Verdict:
    """Go when nothing is held; wait while only the previous tree holds ports, up to ``limit`` seconds;
    refuse a port held by anything else at once, and the previous tree's once the limit has passed."""
    if not held:
        return Verdict(GO)
    for address, holders in held.items():
        if not releasing(holders, tree):
            seen = f"; pids {_pids(set(holders))} listen on it" if _pids(set(holders)) else ""
            return Verdict(REFUSE, f"{address}: cannot bind (Address already in use{seen})")
    pids = _pids(set().union(*held.values())) or _pids(set(tree))
    addresses = ", ".join(held)
    if elapsed >= limit:
        return Verdict(REFUSE, f"the previous tree of this state dir (pids {pids}) still holds {addresses} "
                               f"after {limit:.0f} s")
    return Verdict(WAIT, f"waiting up to {limit:.0f} s for the previous tree (pids {pids}) to release {addresses}")
