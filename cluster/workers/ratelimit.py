"""Rate limits for the HTTP tier: per route pattern (``ratelimit.rules``) or per handler (``@rate_limit``).

    @rate_limit("10/second;500/hour", per="api_key")
    async def quote(request): ...

A limited request gets 429 with a JSON body and ``Retry-After``; every response of a limited
route carries the IETF draft headers ``RateLimit-Policy`` and ``RateLimit``. The counters
live in Redis (``resilience.ratelimit``), so the limit holds over every worker and host.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from limits import RateLimitItem

from cluster.config import Settings
from cluster.config.settings import RateLimitRule
from cluster.resilience.ratelimit import Decision, RateLimiter, RateLimitUnavailable, parse_limits
from cluster.workers.client_ip import client_ip
from cluster.workers.middleware import Handler, json_error

log = logging.getLogger("workers.ratelimit")
Per = Literal["ip", "api_key", "route"]
LIMITER = web.AppKey("rate_limiter", RateLimiter)
RULES = web.AppKey("rate_limit_rules", tuple)
SETTINGS = web.AppKey("rate_limit_settings", Settings)
HANDLER_ATTRIBUTE = "__cluster_rate_limit__"


@dataclass(frozen=True)
class Policy:
    """One limit to apply: ``id`` names its counters in Redis (the same on every host)."""

    id: str
    name: str
    per: Per
    items: tuple[RateLimitItem, ...]
    methods: frozenset[str] = frozenset()
    pattern: str = ""  # a rule's path glob; empty for a decorated handler


def policy_of(rule: RateLimitRule) -> Policy:
    return Policy(f"{rule.per}|{rule.path}|{rule.limit}", rule.per, rule.per, parse_limits(rule.limit),
                  frozenset(m.upper() for m in rule.methods), rule.path)


def rate_limit(limit: str, per: Per = "ip") -> Callable[[Any], Any]:
    """Limit one handler; the counters are keyed by the handler's module and name."""
    items = parse_limits(limit)

    def decorate(handler: Any) -> Any:
        name = f"{handler.__module__}.{handler.__qualname__}"
        setattr(handler, HANDLER_ATTRIBUTE, Policy(f"{per}|{name}|{limit}", per, per, items))
        return handler

    return decorate


def matching(policies: tuple[Policy, ...], method: str, path: str) -> Policy | None:
    """The first rule whose pattern and methods match the request."""
    for policy in policies:
        if fnmatch.fnmatchcase(path, policy.pattern) and (not policy.methods or method in policy.methods):
            return policy
    return None


def client_key(policy: Policy, request: web.Request, settings: Settings) -> str:
    server = settings.server
    ip = client_ip(request.remote, request.headers, server.trusted_proxies, server.forwarded_header)
    if policy.per == "api_key":
        key = request.headers.get(settings.ratelimit.api_key_header)
        return f"key:{key}" if key else f"ip:{ip}"  # no key: limited as its address
    if policy.per == "route":
        resource = request.match_info.route.resource
        return f"route:{resource.canonical if resource is not None else request.path}"
    return f"ip:{ip}"


def headers(decision: Decision) -> dict[str, str]:
    """The IETF draft's headers (draft-ietf-httpapi-ratelimit-headers): quota and window, what is left."""
    name = decision.policy
    return {"RateLimit-Policy": f'"{name}";q={decision.limit};w={decision.window}',
            "RateLimit": f'"{name}";r={decision.remaining};t={decision.reset_after}'}


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    limiter = app.get(LIMITER)
    if limiter is None:
        return await handler(request)
    policy = getattr(request.match_info.handler, HANDLER_ATTRIBUTE, None) or matching(
        app[RULES], request.method, request.path)
    if policy is None:
        return await handler(request)
    try:
        decision = await limiter.hit(policy.id, policy.items, client_key(policy, request, app[SETTINGS]),
                                      policy.name)
    except RateLimitUnavailable as exc:
        response = json_error(503, str(exc))
        response.headers["Retry-After"] = "1"
        return response
    if decision is None:  # Redis could not say: fail open
        return await handler(request)
    extra = headers(decision)
    if not decision.allowed:
        response = json_error(429, "Too Many Requests: rate limit exceeded", policy=decision.policy,
                              limit=decision.limit, window=decision.window, retry_after=decision.reset_after)
        response.headers["Retry-After"] = str(decision.reset_after)
        response.headers.update(extra)
        return response
    response = await handler(request)
    response.headers.update(extra)
    return response


def install(app: web.Application, settings: Settings, url: str | None) -> None:
    """The rules and the limiter for ``rate_limit_middleware`` (placed by ``workers.app``); off without rules or Redis."""
    app[RULES] = tuple(policy_of(rule) for rule in settings.ratelimit.rules)
    app[SETTINGS] = settings
    if not url or not settings.ratelimit.enabled:
        return

    async def lifecycle(app: web.Application) -> Any:
        try:
            limiter = RateLimiter(url, settings.ratelimit)
        except Exception:  # no limits rather than no worker
            log.exception("cannot set up rate limits on %s: requests are not limited", url.split("@")[-1])
            yield
            return
        app[LIMITER] = limiter
        yield
        await limiter.close()

    app.cleanup_ctx.append(lifecycle)
