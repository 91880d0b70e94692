"""Runs inside gunicorn's arbiter process (the HTTP tier), started by the supervisor as ``python -m cluster.arbiter.http_tier``."""
