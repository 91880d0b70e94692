"""Fixtures of the resilience tests: a real redis-server."""

from tests.redis_fixture import redis_server, redis_url  # noqa: F401  (fixtures)
