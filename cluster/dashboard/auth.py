"""Who may see the dashboard: the admin check, and login sessions made from the admin token.

The admin check itself is ``workers.admin_auth.admin_refusal`` (our own
``Host``, then the bearer token or a local client); on top of it a browser can
log in with the token once and carry an HttpOnly, SameSite=Strict session
cookie instead, still only under one of our own names. What an action needs on
top (CSRF) is ``dashboard.csrf``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

from cluster.workers.admin_auth import AdminPolicy, admin_refusal, token_matches

SESSION_COOKIE = "cluster_session"
MAX_IDS = 1000


class ExpiringIds:
    """Random ids the server issued, each valid for ``ttl`` seconds, at most ``MAX_IDS`` (oldest dropped)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._expires: dict[str, float] = {}

    def issue(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        self._expires = {key: at for key, at in self._expires.items() if at > now}
        if len(self._expires) >= MAX_IDS:
            self._expires.pop(min(self._expires, key=self._expires.__getitem__))
        key = secrets.token_urlsafe(32)
        self._expires[key] = now + self.ttl
        return key

    def valid(self, key: str | None, now: float | None = None) -> bool:
        if not key:
            return False
        expires = self._expires.get(key)
        return expires is not None and expires > (time.time() if now is None else now)

    def drop(self, key: str | None) -> None:
        if key:
            self._expires.pop(key, None)


class Sessions(ExpiringIds):
    """Login sessions in the supervisor's memory (a restart logs everyone out)."""

    def login(self, given: str, token: str | None, now: float | None = None) -> str | None:
        """A new session id when ``given`` is the admin token, else None."""
        return self.issue(now) if token_matches(f"Bearer {given}", token) else None

    def logout(self, sid: str | None) -> None:
        self.drop(sid)


def refusal(peer: str | None, headers: Mapping[str, str], cookies: Mapping[str, str], sessions: Sessions,
            policy: AdminPolicy) -> tuple[int, str] | None:
    """None when the request may see the dashboard, else (status, reason)."""
    if ("Authorization" not in headers and policy.hosts.allows(headers.get("Host"))
            and sessions.valid(cookies.get(SESSION_COOKIE))):
        return None
    return admin_refusal(peer, headers, policy)
