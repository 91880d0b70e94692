"""Running real consumers inside a test's event loop until a condition holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cluster.config import Settings
from cluster.queues.client import QueueClient
from cluster.queues.consumer import Consumer
from cluster.db import Router


async def consume_until(settings: Settings, priorities: list[str], condition: Callable[[QueueClient], Awaitable[Any]],
                        timeout: float = 60.0, db: Router | None = None) -> Any:
    """Run one consumer per priority until ``condition(client)`` is truthy; returns its value."""
    client = QueueClient(settings)
    consumers = [Consumer(settings, p, client, name=f"test-{p}", db=db) for p in priorities]
    tasks = [asyncio.create_task(c.run()) for c in consumers]
    try:
        deadline = time.monotonic() + timeout
        while True:
            value = await condition(client)
            if value:
                return value
            for task in tasks:
                if task.done():
                    task.result()
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.05)
    finally:
        for consumer in consumers:
            consumer.stop()
        await asyncio.gather(*tasks)
        await client.close()
