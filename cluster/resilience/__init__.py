"""Resilience parts every handler, job and the replica router can use: circuit breakers
(``resilience.breaker``), a Redis cache (``resilience.cache``) and rate limits
(``resilience.ratelimit``). Below ``db`` in the layers: it imports only config and observability.
"""
