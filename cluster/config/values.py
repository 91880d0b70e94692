"""Pure checks of single setting values that pydantic's types do not cover: each returns a problem or None.

They run when settings are loaded, so `config check` and `start` refuse the
same values, before anything forks, naming the key.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qs, urlsplit

# RFC 9110 field-name: a token; a field value: visible characters, spaces and tabs (no CR, LF or NUL).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\U0010ffff]*")
_DOTTED = re.compile(r"[0-9.]+")


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); ValueError when it is not, or the port is past 65535."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if host.startswith("[") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("not HOST:PORT with a port from 1 to 65535")
    return host, int(port)


def tcp_address_problem(address: str) -> str | None:
    """What is wrong with a ``HOST:PORT`` listen address, without resolving it."""
    try:
        host, port = split_host_port(address)
    except ValueError as exc:
        return f"{address!r} is {exc}"
    if port == 0:
        return f"{address!r}: port 0 is not a port to listen on (from 1 to 65535)"
    if _DOTTED.fullmatch(host) or ":" in host:  # it claims to be an address: it must be one
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return f"{address!r}: {host!r} is not an IP address"
    return None


def redis_db_problem(url: str) -> str | None:
    """A Redis URL's database number (``/N`` or ``?db=N``) must be a whole number; redis-py ignores a bad path."""
    parts = urlsplit(url)
    given = parse_qs(parts.query).get("db", [])
    if parts.scheme in ("redis", "rediss") and parts.path.strip("/"):
        given.append(parts.path.strip("/"))
    for value in given:
        if not value.isdigit():
            return f"database number {value!r} is not a whole number (redis://HOST:PORT/N)"
    return None


def header_problem(name: str, value: str) -> str | None:
    """An HTTP header must be a token name and a value without control characters (no CRLF injection)."""
    if not _TOKEN.fullmatch(name):
        return f"header name {name!r} is not an HTTP token"
    if not _FIELD_VALUE.fullmatch(value):
        return f"header {name!r} has a control character (CR, LF, NUL...) in its value"
    return None
