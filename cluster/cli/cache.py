"""`cluster cache status|clear`: the Redis cache, straight on the running cluster's Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from cluster.cli.common import fail, running_settings

T = TypeVar("T")
CLI_TIMEOUT = 5.0  # an operator waits longer than a request does


def _with_cache(state_dir: str | None, config_file: str | None, action: Callable[[Any], Awaitable[T]]) -> T:
    from cluster.resilience.cache import ResilientCache

    settings = running_settings(state_dir, config_file)
    url = settings.cache.url or settings.redis.url
    if not url:
        fail("the cache is off: no cache.url or redis.url (REDIS_URL), and no running cluster's embedded Redis")

    async def main() -> T:
        cache = ResilientCache()
        cache.configure(url, settings.cache.model_copy(update={"timeout": CLI_TIMEOUT, "enabled": True}))
        try:
            if not await cache.backend.ping():
                fail(f"the cache's Redis does not answer ({url.split('@')[-1]})")
            return await action(cache)
        finally:
            await cache.close()

    return asyncio.run(main())


@click.group("cache")
def cache_group() -> None:
    """The Redis cache (resilience.cache)."""


_state_dir = click.option("--state-dir", type=click.Path(file_okay=False), help="The supervisor's state dir.")
_config = click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")


@cache_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@_state_dir
@_config
def status(as_json: bool, state_dir: str | None, config_file: str | None) -> None:
    """Keys per cache name (hits, misses and errors are in /metrics: cluster_cache_*)."""
    body = _with_cache(state_dir, config_file, lambda cache: cache.status())
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(f"cache keys: {body['keys']}")
    for name, count in sorted((body["caches"] or {}).items()):
        click.echo(f"  {name}: {count}")


@cache_group.command("clear")
@click.option("--tag", help="Delete the keys with this tag (e.g. user:42).")
@click.option("--pattern", help="Delete the keys matching this glob under cache: (e.g. 'quotes:*').")
@_state_dir
@_config
def clear(tag: str | None, pattern: str | None, state_dir: str | None, config_file: str | None) -> None:
    """Delete cache keys: by tag, by pattern, or every cache key (never other Redis keys)."""
    if tag and pattern:
        fail("give --tag or --pattern, not both", 2)

    async def action(cache: Any) -> str:
        if tag:
            await cache.delete_tags(tag)
            return f"cleared the keys tagged {tag}"
        deleted = await cache.delete_match(pattern or "*")
        return f"cleared {deleted} key(s) matching cache:{(pattern or '*').removeprefix('cache:')}"

    click.echo(_with_cache(state_dir, config_file, action))
