"""The stuck-job guard: a job still running ``queues.kill_grace`` past its timeout ends its consumer.

Cooperative cancellation cannot stop such a job; a fresh process can. Two ways of being stuck are
watched here:

- an async job ignored its cancellation: the watch loop (a task of the consumer's loop) sees it;
- a job blocks the event loop, so no coroutine can act: the loop watchdog's thread sees the loop stop
  turning and asks the consumer's records of its jobs in hand which one holds it (``in_hand.on_the_loop``).

The third, a sync job that ignores its soft timeout, is the handler runner's to notice (``HungHandler``);
the consumer then calls ``die_for`` too.

Either way the job is recorded by name (dead letter), everything done is flushed, the exit is marked as
planned (whoever claims our other jobs then reruns them without counting a crash) and the consumer
SIGKILLs itself; its pool starts a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from cluster.queues import metrics
from cluster.queues.acks import Acks
from cluster.queues.connection import UNAVAILABLE_ERRORS, sync_client
from cluster.queues.failures import Failure
from cluster.queues.in_hand import Hand, on_the_loop
from cluster.queues.watchdog import LoopWatchdog

log = logging.getLogger("queues.consumer")

#: How often (s) the watch loop looks for async jobs past their grace while the consumer holds jobs.
WATCH_EVERY = 0.25
#: How often (s) it looks while the consumer holds none: a job that starts meanwhile is checked at most this late.
WATCH_IDLE_EVERY = 1.0
#: Longest wait (s) for the last flush before the kill; past it the jobs are reclaimed and rerun all the same.
DYING_FLUSH_TIMEOUT = 5.0
#: Lifetime (s) of the planned-exit mark: a peer on this host claims the jobs within a second, the reaper
#: within a lease; a mark nobody read must not outlive its use.
PLANNED_EXIT_TTL = 600


def overdue(started: float, timeout: float, kill_grace: float, now: float) -> float | None:
    """Seconds past its ``timeout`` of a job started at ``started`` (monotonic) when that is beyond
    ``kill_grace``: the job is stuck. None while it is not."""
    over = now - started - timeout
    return over if over > kill_grace else None


class StuckJobGuard:
    """Watches a consumer's jobs in hand (``watch()``, and a ``LoopWatchdog`` thread) and kills the process
    for a stuck one."""

    def __init__(self, hand: Hand, acks: Acks) -> None:
        self.hand = hand
        self.acks = acks
        self.kill_grace = hand.settings.queues.kill_grace
        self.watchdog = LoopWatchdog(self.on_loop_blocked, metrics.LOOP_LAG.labels(hand.priority),
                                     busy=lambda: bool(hand.running))
        self._dying = False
        self._planned_exit = hand.keys.planned_exit(hand.name)

    async def watch(self) -> None:
        """Find async jobs still running ``kill_grace`` past their timeout: they ignored the cancellation."""
        while True:
            await asyncio.sleep(WATCH_EVERY if self.hand.running else WATCH_IDLE_EVERY)
            now = time.monotonic()
            for entry_id, job in list(self.hand.running.items()):
                over = overdue(job.started, job.timeout, self.kill_grace, now)
                if job.spec.is_async and over is not None and job.task and not job.task.done():
                    await self.die_for(Failure(
                        entry_id, f"ignored cancellation: still running {over:.1f} s after its {job.timeout:g} s "
                        "timeout", envelope=job.envelope, reason="ignored cancellation"))

    def on_loop_blocked(self, blocked: float) -> bool:
        """In the watchdog thread: the loop has not turned for ``blocked`` s. Kill us if a job over its
        deadline holds it; True when the process is going."""
        entry_id = on_the_loop(self.hand.running)
        job = self.hand.running.get(entry_id) if entry_id is not None else None
        if job is None or overdue(job.started, job.timeout, self.kill_grace, time.monotonic()) is None:
            return False
        failure = Failure(entry_id, f"blocked the event loop for {blocked:.1f} s (timeout {job.timeout:g} s)",
                          envelope=job.envelope, reason="blocked the event loop")
        self.acks.classify(failure)
        self._announce_death(failure)
        try:
            self._flush_sync([failure])
        except Exception as exc:  # whatever happens, the process must go
            log.error("could not record the blocking job before the kill (%s); its entry is reclaimed", exc)
        os.kill(os.getpid(), signal.SIGKILL)
        return True

    async def die_for(self, failure: Failure) -> None:
        """A job is stuck past its grace: record its failure and everything done, then SIGKILL ourselves."""
        if self._dying:
            return
        self._dying = True
        self._announce_death(failure)
        self.acks.record(failure)
        try:
            async with asyncio.timeout(DYING_FLUSH_TIMEOUT):
                await self.acks.flush()
                await self.hand.redis.set(self._planned_exit, failure.entry_id, ex=PLANNED_EXIT_TTL)
        except (TimeoutError, *UNAVAILABLE_ERRORS):
            log.error("could not flush before the kill; the jobs are reclaimed and rerun",
                      extra={"queue": self.hand.priority})
        os.kill(os.getpid(), signal.SIGKILL)

    def _announce_death(self, failure: Failure) -> None:
        envelope = failure.envelope
        assert envelope is not None
        log.critical("job %s (%s) %s; killing this consumer so its pool replaces it; its %d other job(s) "
                     "rerun at once", envelope.id, envelope.name, failure.error, len(self.hand.running) - 1,
                     extra={"queue": self.hand.priority, "job_id": envelope.id, "job": envelope.name,
                            "reason": failure.reason, "consumer": self.hand.name})

    def _flush_sync(self, failures: list[Failure]) -> None:
        """From the watchdog thread while the loop is blocked: flush what is done, these failures and the
        planned-exit mark, with a client of its own."""
        client = sync_client(self.hand.settings.redis.url or "", max_connections=1)
        try:
            pipe = client.pipeline(transaction=True)
            self.acks.queue_sync(client, pipe, failures)
            pipe.set(self._planned_exit, failures[0].entry_id, ex=PLANNED_EXIT_TTL)
            pipe.execute()
        finally:
            client.close()
