"""The lock of a unique job: taken at enqueue, freed when the job ends (done or dead) or at its TTL.

The lock ``{cq:<queue>}:unique:<key>`` holds the id of the job that took it, with ``unique_for`` as its
TTL; ``{cq:<queue>}:unique-owner:<job id>`` names the lock, so the job frees it without knowing its key.
Taking is one script (``UNIQUE_CLAIM``): of concurrent enqueues, one takes the lock, the others get its id.
Freeing is done by the handler's wrapper (``releasing``), after a success or after a failure that is
final (the last attempt); a job killed (stuck, its process dead for good) keeps the lock until its TTL.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

from cluster.queues.connection import sync_client
from cluster.queues.context import JobContext, current_job
from cluster.queues.keys import QueueKeys
from cluster.queues.scripts import UNIQUE_CLAIM, UNIQUE_RELEASE

#: The longest ``unique_for`` (s): a lock outliving a month would only hide a job lost for good.
MAX_UNIQUE_FOR = 30 * 24 * 3600.0


def check_unique_for(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_UNIQUE_FOR:
        raise ValueError(f"unique_for must be seconds > 0 and <= {MAX_UNIQUE_FOR:g}, got {seconds!r}")
    return float(seconds)


def default_key(name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str:
    """The lock key of a job with no ``unique_key``: its name and a digest of its arguments (as Sidekiq's
    unique jobs: the same job with the same arguments)."""
    digest = hashlib.sha256(json.dumps([list(args), kwargs], sort_keys=True, default=str).encode()).hexdigest()
    return f"{name}:{digest[:32]}"


async def claim(client: redis.asyncio.Redis, keys: QueueKeys, key: str, job_id: str, ttl: float) -> str | None:
    """Take lock ``key`` of queue ``keys`` for ``job_id``: None when taken, else the id of the job holding it."""
    held = await client.eval(UNIQUE_CLAIM, 2, keys.unique(key), keys.unique_owner(job_id), job_id, int(ttl * 1000))
    return None if held is None else str(held)


async def release(client: redis.asyncio.Redis, keys: QueueKeys, job_id: str) -> bool:
    """Free the lock ``job_id`` holds, if any (True when it had one)."""
    return bool(await client.eval(UNIQUE_RELEASE, 1, keys.unique_owner(job_id), job_id))


_sync_clients: dict[str, redis.Redis] = {}


def _release_sync(ctx: JobContext) -> None:
    """``release`` from a sync handler's thread (the job's async client belongs to the event loop)."""
    url = ctx.settings.redis.url or ""
    client = _sync_clients.get(url)
    if client is None:
        client = _sync_clients[url] = sync_client(url)
    client.eval(UNIQUE_RELEASE, 1, QueueKeys(ctx.priority).unique_owner(ctx.id), ctx.id)


def releasing(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (async or sync) made to free its job's unique lock when the job ends: on success, or on
    a failure of its last attempt (an earlier failure is retried, still holding it)."""
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                result = await func(*args, **kwargs)
            except BaseException:
                ctx = current_job()
                if ctx.last_attempt:
                    await release(ctx.redis, QueueKeys(ctx.priority), ctx.id)
                raise
            ctx = current_job()
            await release(ctx.redis, QueueKeys(ctx.priority), ctx.id)
            return result

        return run_async

    @functools.wraps(func)
    def run_sync(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except BaseException:
            if current_job().last_attempt:
                _release_sync(current_job())
            raise
        _release_sync(current_job())
        return result

    return run_sync
