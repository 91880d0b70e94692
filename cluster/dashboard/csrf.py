"""CSRF for the dashboard's forms: synchronizer tokens issued by the server, and the request's origin.

A token is an HMAC, under a key drawn at each start, of what the browser is
bound to on the server: its login session, or (a local client with no session)
a nonce the server issued and keeps. A page on another port of the same host
can plant any cookie (cookies are not isolated by port) but cannot compute a
token for it, and a planted nonce the server never issued binds nothing. A
login makes a new session, so a new token. Every form POST must also come from
a page of ours: its ``Origin`` (or, without one, its ``Referer``) must name the
very host and port it was sent to. A request with ``Authorization`` needs
neither: a browser never adds that header on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from cluster.dashboard.auth import SESSION_COOKIE, ExpiringIds, Sessions

NONCE_COOKIE = "cluster_csrf"
FIELD = "csrf"


def same_origin(headers: Mapping[str, str]) -> bool:
    """The request's Origin, else its Referer, names the host:port it was sent to (its Host)."""
    host = headers.get("Host", "").lower()
    source = headers.get("Origin") or headers.get("Referer")
    if not host or not source or source == "null":
        return False
    return urlsplit(source).netloc.lower() == host


class CsrfTokens:
    """Issues and checks synchronizer tokens for sessions and for local clients' nonces."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.nonces = ExpiringIds(sessions.ttl)
        self._key = secrets.token_bytes(32)

    def binding(self, cookies: Mapping[str, str]) -> str | None:
        """What the browser is bound to on the server: its valid session, else a nonce we issued, else None."""
        sid = cookies.get(SESSION_COOKIE)
        if self.sessions.valid(sid):
            return f"session:{sid}"
        nonce = cookies.get(NONCE_COOKIE)
        return f"nonce:{nonce}" if self.nonces.valid(nonce) else None

    def new_nonce(self) -> tuple[str, str]:
        """A nonce for a local client with no session (its cookie's value), and the binding it makes."""
        nonce = self.nonces.issue()
        return nonce, f"nonce:{nonce}"

    def token(self, binding: str) -> str:
        digest = hmac.new(self._key, binding.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def valid(self, cookies: Mapping[str, str], submitted: str | None) -> bool:
        binding = self.binding(cookies)
        if binding is None or not submitted:
            return False
        return hmac.compare_digest(self.token(binding).encode(), submitted.encode())

    def refusal(self, headers: Mapping[str, str], cookies: Mapping[str, str], submitted: str | None) -> str | None:
        """Why a state-changing form is refused (403), or None."""
        if "Authorization" in headers:
            return None
        if not same_origin(headers):
            return "the request does not come from a dashboard page (Origin/Referer is not this host and port)"
        if not self.valid(cookies, submitted):
            return "missing or wrong CSRF token: reload the page and try again"
        return None
