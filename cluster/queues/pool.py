"""A queue pool process: ``python -m queues.pool SETTINGS_JSON PRIORITY`` (started by the supervisor)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from cluster.config import PRIORITIES, Settings, mask_text
from cluster.observability.logs import configure as configure_logs
from cluster.observability.logs import redact_with
from cluster.observability.logs import reopen as reopen_logs
from cluster.queues import api, registry, scheduler
from cluster.queues.client import QueueClient
from cluster.queues.connection import async_client
from cluster.queues.consumer import Consumer, ConsumerDied
from cluster.db import router_from_settings
from cluster.resilience.cache import CACHE

log = logging.getLogger("queues.pool")
EXIT_USAGE = 2
EXIT_DIED = 3


async def serve(settings: Settings, priority: str) -> None:
    """Consume ``priority`` until SIGTERM/SIGINT, then finish the jobs in hand."""
    concurrency = settings.queues.pool(priority).concurrency
    redis_client = async_client(settings.redis.url or "", max_connections=max(64, 4 * concurrency), blocking=False)
    client = QueueClient(settings, redis_client)
    api.configure(settings, client)
    db = router_from_settings(settings)
    if db is not None:
        await db.start()
    CACHE.configure(settings.cache.url or settings.redis.url, settings.cache)
    consumer = Consumer(settings, priority, client, db=db)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stop)
    loop.add_signal_handler(signal.SIGUSR1, reopen_logs)
    scheduling = scheduler.start_if_any(redis_client, settings.queues.periodic_lease, api.enqueue)
    try:
        await consumer.run()
    finally:
        if scheduling is not None:
            await scheduling.stop()
        await client.close()
        await CACHE.close()
        if db is not None:
            await db.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[1] not in PRIORITIES:
        configure_logs("queue")
        log.error("usage: python -m queues.pool SETTINGS_JSON {%s}, got %r", "|".join(PRIORITIES), args)
        return EXIT_USAGE
    settings = Settings.model_validate_json(Path(args[0]).read_text())
    configure_logs(f"queue-{args[1]}", settings.server.log_level, settings.logging.format, settings.logging.file)
    redact_with(mask_text)
    try:
        registry.load_jobs_module(settings.queues.jobs_module)
    except Exception:
        log.exception("cannot import the jobs module %r", settings.queues.jobs_module)
        return EXIT_USAGE
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(settings, args[1]))
    except ConsumerDied:
        return EXIT_DIED  # logged by the consumer; the supervisor starts a fresh one
    return 0


if __name__ == "__main__":
    sys.exit(main())
