"""Leader election by a short Redis lease: one process of all that share the Redis holds it at a time.

The lease is a key set with NX and a TTL (``queues.periodic_lease``) whose value is the holder's token.
The leader renews it every quarter of the lease (Sidekiq Enterprise: every 15 s of 60), a follower tries
to take it every half lease; a leader that dies stops renewing, so another takes over at most a lease
and a half later. Renewing and taking are one script (``LEASE_HOLD``): a token that lost the lease (it
stalled past the TTL and someone else took it) learns so at its next turn and does not renew another's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis.asyncio

from cluster.queues import identity
from cluster.queues.scripts import LEASE_HOLD, LEASE_RELEASE


@dataclass(frozen=True)
class LeasePolicy:
    """When a leader renews and a follower checks, from the lease's length (s)."""

    lease: float

    @property
    def renew_every(self) -> float:
        return self.lease / 4

    @property
    def check_every(self) -> float:
        return self.lease / 2

    def wait(self, leader: bool, until_next_tick: float | None) -> float:
        """How long (s) to sleep before the next turn: a leader wakes for the next tick or to renew,
        whichever comes first; a follower only checks whether the lease is free."""
        if not leader:
            return self.check_every
        if until_next_tick is None:
            return self.renew_every
        return max(0.0, min(self.renew_every, until_next_tick))


def new_token() -> str:
    """A token that names its process (``cluster periodic`` shows the leader) and is unique to this run."""
    return f"{identity.consumer_name()}:{secrets.token_hex(4)}"


def holder_name(token: str | None) -> str | None:
    """The consumer name in a lease token (None for no token)."""
    return token.rpartition(":")[0] if token else None


class Lease:
    """One process's hold on the lease ``key``."""

    def __init__(self, redis_client: redis.asyncio.Redis, key: str, policy: LeasePolicy,
                 token: str | None = None) -> None:
        self.redis = redis_client
        self.key = key
        self.policy = policy
        self.token = token or new_token()
        self._hold = redis_client.register_script(LEASE_HOLD)
        self._release = redis_client.register_script(LEASE_RELEASE)

    async def hold(self) -> bool:
        """Renew the lease or take it if free: True while this process leads."""
        return bool(await self._hold(keys=[self.key], args=[self.token, int(self.policy.lease * 1000)]))

    async def release(self) -> None:
        """Give the lease up (at a clean stop), so a follower takes over at its next check."""
        await self._release(keys=[self.key], args=[self.token])
