"""Who may see the dashboard and act on it: sessions from the admin token, and CSRF tokens.

The admin check itself is ``workers.admin_auth.admin_refusal`` (loopback, or
the bearer token); on top of it a browser can log in with the token once and
carry an HttpOnly, SameSite=Strict session cookie instead. Every action must
also carry the CSRF token that the page was rendered with (double submit: the
form field must equal the ``cluster_csrf`` cookie), unless it authenticates
with an ``Authorization`` header, which a browser never adds on its own.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping

from cluster.workers.admin_auth import admin_refusal, token_matches

SESSION_COOKIE = "cluster_session"
CSRF_COOKIE = "cluster_csrf"
CSRF_FIELD = "csrf"
MAX_SESSIONS = 1000


class Sessions:
    """Login sessions in the supervisor's memory (a restart logs everyone out), bounded in number."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._expires: dict[str, float] = {}

    def login(self, given: str, token: str | None, now: float | None = None) -> str | None:
        """A new session id when ``given`` is the admin token, else None."""
        if not token_matches(f"Bearer {given}", token):
            return None
        now = time.time() if now is None else now
        self._expires = {sid: at for sid, at in self._expires.items() if at > now}
        if len(self._expires) >= MAX_SESSIONS:
            self._expires.pop(min(self._expires, key=self._expires.__getitem__))
        sid = secrets.token_urlsafe(32)
        self._expires[sid] = now + self.ttl
        return sid

    def valid(self, sid: str | None, now: float | None = None) -> bool:
        if not sid:
            return False
        expires = self._expires.get(sid)
        return expires is not None and expires > (time.time() if now is None else now)

    def logout(self, sid: str | None) -> None:
        if sid:
            self._expires.pop(sid, None)


def refusal(peer: str | None, headers: Mapping[str, str], cookies: Mapping[str, str], sessions: Sessions,
            token: str | None) -> tuple[int, str] | None:
    """None when the request may see the dashboard, else (status, reason)."""
    if "Authorization" not in headers and sessions.valid(cookies.get(SESSION_COOKIE)):
        return None
    return admin_refusal(peer, headers, token)


def csrf_ok(headers: Mapping[str, str], cookies: Mapping[str, str], submitted: str | None) -> bool:
    """An action may proceed: header-authenticated, or the submitted token equals the cookie's."""
    if "Authorization" in headers:
        return True
    cookie = cookies.get(CSRF_COOKIE)
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)
