"""Addresses as URLs: where to reach a gunicorn bind address from this host."""

from __future__ import annotations


def bind_url(bind: str, path: str) -> tuple[str, str | None]:
    """(URL of ``path``, unix socket path or None) for a ``HOST:PORT`` or ``unix:PATH`` bind.

    A wildcard bind is reached on the loopback address of its family.
    """
    if bind.startswith("unix:"):
        return f"http://localhost{path}", bind[len("unix:"):]
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}", None
