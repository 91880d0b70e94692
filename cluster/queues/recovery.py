"""Recovery of the jobs of dead consumers, run by every live consumer of the queue.

- A consumer of this host that died (its pid is gone) has its pending entries claimed by name at once
  (``reclaim_dead``, one CLAIM_CONSUMER script per batch so two peers never both take an entry): the
  process is gone, nothing else will acknowledge them, no need to wait for the lease.
- Deaths nobody saw (a consumer of another host, a frozen process) are the reaper's: one consumer at a
  time (a Redis lock) reclaims the entries idle longer than the lease (``reap``).

A job taken back runs again with the same attempt: a crash is not a failed attempt. It gains one crash
when it may be to blame (``policy.crashed_out`` sends a job that keeps killing its consumers to the dead
letter); the jobs of a consumer killed on purpose by its stuck-job guard (a planned exit) gain none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cluster.queues import identity
from cluster.queues.acks import Acks
from cluster.queues.failures import Failure
from cluster.queues.in_hand import Hand
from cluster.queues.keys import GROUP
from cluster.queues.scripts import CLAIM_CONSUMER

log = logging.getLogger("queues.consumer")

#: Entries one XAUTOCLAIM of the reaper looks at; it pages on until the whole stream is seen.
AUTOCLAIM_COUNT = 100
#: A group consumer that holds nothing is forgotten once idle this long (ms), or ten leases if longer:
#: the group stays bounded as consumers come and go.
FORGET_IDLE_MS = 600_000


def forgettable(consumers: Iterable[Mapping[str, Any]], own: str, lease: float) -> list[str]:
    """The names, among ``consumers`` (XINFO CONSUMERS rows), that hold nothing and have been idle long."""
    idle_limit = max(FORGET_IDLE_MS, int(lease * 10_000))
    return [c["name"] for c in consumers if c["name"] != own and c["pending"] == 0 and c["idle"] > idle_limit]


def claim_reason(dead: str, planned: bool) -> str:
    """Why the jobs of consumer ``dead`` run again, as their failure says."""
    return (f"its consumer {dead} was killed on purpose (a neighbour was stuck)" if planned
            else f"its consumer {dead} died")


class Recovery:
    """Takes back the jobs of dead consumers of one queue; ``take_back`` also serves the consumer's own stop."""

    def __init__(self, hand: Hand, lease: float, acks: Acks) -> None:
        self.hand = hand
        self.lease = lease
        self.acks = acks
        self.claim_batch = hand.settings.queues.claim_batch
        self.local_prefix = identity.local_prefix()
        self._claim = hand.redis.register_script(CLAIM_CONSUMER)

    def take_back(self, entry_id: str, fields: dict[str, str], why: str, penalty: bool) -> None:
        """Put a job back on the queue: the same attempt; one more crash if it may be to blame
        (a job that keeps killing its consumers goes to the dead letter)."""
        envelope = self.acks.decoded(entry_id, fields)
        if envelope is None:
            return
        crashes = envelope.crashes + (1 if penalty else 0)
        self.acks.record(Failure(entry_id, why, envelope=envelope.after_crash(crashes), reason="crashed"))

    async def reclaim_dead(self) -> int:
        """Claim, by name, the pending jobs of every consumer of this host that died; returns how many.

        Consumers of other hosts are left to the reaper.
        """
        taken = 0
        for consumer in await self.hand.redis.xinfo_consumers(self.hand.keys.stream, GROUP):
            name = consumer["name"]
            pid = identity.local_pid(name, self.local_prefix)
            if name == self.hand.name or pid is None or not identity.is_dead(pid):
                continue
            taken += await self._claim_from(name)
        return taken

    async def _claim_from(self, dead: str) -> int:
        redis, keys = self.hand.redis, self.hand.keys
        planned = await redis.get(keys.planned_exit(dead))
        why = claim_reason(dead, bool(planned))
        taken = 0
        while True:
            reply = await self._claim(keys=[keys.stream], args=[GROUP, dead, self.hand.name, self.claim_batch])
            for entry_id, flat in reply:
                fields = dict(zip(flat[::2], flat[1::2])) if flat else {}
                self.take_back(entry_id, fields, why, penalty=not planned)
            taken += len(reply)
            if len(reply) < self.claim_batch:
                break
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xgroup_delconsumer(keys.stream, GROUP, dead)
            pipe.zrem(keys.consumers, dead)
            pipe.delete(keys.planned_exit(dead))
            await pipe.execute()
        if taken:
            log.warning("claimed %d job(s) of dead consumer %s", taken, dead,
                        extra={"queue": self.hand.priority, "dead_consumer": dead, "jobs": taken})
        return taken

    async def reap(self, hold: float) -> int:
        """If we hold (or win) the reaper lock for ``hold`` s: reclaim entries idle longer than the lease;
        returns how many."""
        hand, redis, keys = self.hand, self.hand.redis, self.hand.keys
        hold_ms = int(hold * 2000)
        if not await redis.set(keys.reaper_lock, hand.name, nx=True, px=hold_ms):
            if await redis.get(keys.reaper_lock) != hand.name:
                return 0
            await redis.pexpire(keys.reaper_lock, hold_ms)
        reclaimed, start = 0, "0-0"
        while True:
            start, claimed, *_ = await redis.xautoclaim(keys.stream, GROUP, hand.name, start_id=start,
                                                        min_idle_time=int(self.lease * 1000), count=AUTOCLAIM_COUNT)
            for entry_id, fields in claimed:
                if entry_id in hand.running or entry_id in hand.held:
                    continue
                self.take_back(entry_id, fields, f"no consumer acknowledged it for {self.lease:g} s", penalty=True)
                reclaimed += 1
            if start == "0-0":
                break
        for name in forgettable(await redis.xinfo_consumers(keys.stream, GROUP), hand.name, self.lease):
            await redis.xgroup_delconsumer(keys.stream, GROUP, name)
        return reclaimed
