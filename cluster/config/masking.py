"""The one way a secret is hidden before it is shown: logs, config errors, `config show`, status, alert logs.

What is a secret: a setting whose name says so (password, token, secret...),
the password of a URL (``redis://u:PASSWORD@h``), a query parameter whose
name says so (``?password=``, ``?api_key=``), a Telegram bot token in a URL
path (``/bot<token>/``), every alert webhook header except a few that
carry no credential, and a webhook URL as a whole: its path and query are
the credential (Slack's ``/services/T/B/SECRET``, Azure's ``?code=``), so it
is shown as its scheme and host only.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "****"
SECRET_KEY = re.compile(r"password|passwd|pwd|token|secret|authorization|api[_-]?key|signature|cookie|session"
                        r"|credential|private|access[_-]?key|^key$|^sig$|^auth$|^code$|account_sid|sms_from|sms_to",
                        re.IGNORECASE)
# Settings whose whole URL is a credential: shown as scheme://host only.
WHOLE_SECRET_URLS = frozenset({"webhook_url"})
# Webhook headers shown as they are; any other may carry a credential (X-Api-Key, Cookie, X-Signature...).
WEBHOOK_HEADERS_SHOWN = frozenset({"content-type", "user-agent", "accept"})
HEADER_KEYS = ("webhook_headers",)
_TELEGRAM_TOKEN = re.compile(r"/bot[^/?#\s]+")
# Webhook paths that are a credential wherever they appear (Slack /services/T/B/X, Discord /api/webhooks/ID/X).
_WEBHOOK_PATH = re.compile(r"/(services|webhooks|hooks)/\S*", re.IGNORECASE)
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
    path = _WEBHOOK_PATH.sub(lambda m: f"/{m.group(1)}/{MASK}", _TELEGRAM_TOKEN.sub(f"/bot{MASK}", parts.path))
    return urlunsplit(parts._replace(netloc=netloc, query=query, path=path))


def url_origin(url: str) -> str:
    """A URL that is a secret as a whole, as it may be shown: its scheme and host, the rest masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("://", 1)[0] + "://" + MASK
    host = f"[{host}]" if ":" in host else host
    rest = f"/{MASK}" if parts.path.strip("/") or parts.query or parts.fragment or parts.username else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def mask_text(text: str, whole: tuple[str | None, ...] = ()) -> str:
    """Free text (an exception, a log message, a receiver's answer) with every URL in it masked.

    ``whole``: URLs that are secrets as a whole (the webhook's): each, and its
    path and query on their own (a receiver may echo only those), become
    ``url_origin`` before the other URLs are masked.
    """
    for url in whole:
        if not url:
            continue
        parts = urlsplit(url)
        tail = urlunsplit(("", "", parts.path, parts.query, parts.fragment))
        text = text.replace(url, url_origin(url))
        if tail.strip("/?"):
            text = text.replace(tail, f"/{MASK}")
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
    if name in WHOLE_SECRET_URLS and isinstance(value, str):
        return url_origin(value)
    if name in HEADER_KEYS and isinstance(value, dict):
        return mask_headers(value)
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list):
        return [mask(key, item) for item in value]
    if isinstance(value, dict):
        return {k: mask(f"{key}.{k}", v) for k, v in value.items()}
    return value
