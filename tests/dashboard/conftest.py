"""Fixtures of the dashboard tests: a real redis-server (the browser tests start whole clusters)."""

from __future__ import annotations

from tests.redis_fixture import redis_server, redis_url  # noqa: F401  (fixtures)
