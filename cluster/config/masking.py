"""The one way a secret is hidden before it is shown: logs, config errors, `config show`, status, alert logs.

What is a secret: a setting whose name says so (password, token, secret...),
the password of a URL (``redis://u:PASSWORD@h``), a query parameter whose
name says so (``?password=``, ``?api_key=``), a Telegram bot token in a URL
path (``/bot<token>/``), and every alert webhook header except a few that
carry no credential.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "****"
SECRET_KEY = re.compile(r"password|passwd|pwd|token|secret|authorization|api[_-]?key|signature|cookie|session"
                        r"|credential|private|access[_-]?key|^key$|^sig$|^auth$|account_sid|sms_from|sms_to", re.IGNORECASE)
# Webhook headers shown as they are; any other may carry a credential (X-Api-Key, Cookie, X-Signature...).
WEBHOOK_HEADERS_SHOWN = frozenset({"content-type", "user-agent", "accept"})
HEADER_KEYS = ("webhook_headers",)
_TELEGRAM_TOKEN = re.compile(r"/bot[^/?#\s]+")
# A URL in prose ends before the punctuation that follows it ("from http://h/x: 429").
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+(?<![.,;:)\]])")


def mask_url(url: str | None) -> str | None:
    """The URL with its password, secret query parameters and Telegram bot token replaced."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL after all (a bad port, say): hide everything after the scheme
        return url.split("://", 1)[0] + "://" + MASK
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_KEY.search(name) for name, _ in pairs):
            query = urlencode([(n, MASK if SECRET_KEY.search(n) else v) for n, v in pairs], safe="*")
    path = _TELEGRAM_TOKEN.sub(f"/bot{MASK}", parts.path)
    return urlunsplit(parts._replace(netloc=netloc, query=query, path=path))


def mask_text(text: str) -> str:
    """Free text (an exception, a log message) with every URL in it masked."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)) or "", text)


def mask_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Webhook headers as they may be shown: only the allow-listed ones in clear."""
    return {k: v if k.lower() in WEBHOOK_HEADERS_SHOWN else MASK for k, v in headers.items()}


def mask(key: str, value: Any) -> Any:
    """The value of a dotted setting as it may be shown: secrets hidden, URLs masked."""
    if value is None:
        return None
    parts = key.split(".")
    name = parts[-1]
    if len(parts) > 1 and parts[-2] in HEADER_KEYS:  # one header of webhook_headers
        return value if name.lower() in WEBHOOK_HEADERS_SHOWN else MASK
    if SECRET_KEY.search(name):
        return MASK
    if name in HEADER_KEYS and isinstance(value, dict):
        return mask_headers(value)
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list):
        return [mask(key, item) for item in value]
    if isinstance(value, dict):
        return {k: mask(f"{key}.{k}", v) for k, v in value.items()}
    return value
