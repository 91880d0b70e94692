"""What to send: endpoints (method, URL, headers, body) and a weighted mix read from a small file.

Mix file, one endpoint a line, ``#`` starts a comment::

    # weight  method  path-or-URL  [@body.json]
    80  GET   /ping
    15  GET   /health
    5   POST  /api/items  @item.json

A path is joined to the origin of the benchmarked URL; a body file is read
relative to the mix file and sent as ``application/json``.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

T = TypeVar("T")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MixError(ValueError):
    """The mix file, a header or a body is not usable; the message says where."""


@dataclass(frozen=True)
class Endpoint:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    weight: float = 1.0


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MixError(f"{url!r} is not an http(s) URL with a host")
    return url


def parse_headers(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``Name: value`` strings into a dict."""
    headers = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise MixError(f"header {item!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def json_body(path: Path) -> bytes:
    """A JSON file's bytes, checked to parse, so a typo fails before the run and not in every request."""
    try:
        data = path.read_bytes()
        json.loads(data)
    except OSError as exc:
        raise MixError(f"cannot read body file {str(path)!r}: {exc.strerror}") from exc
    except ValueError as exc:
        raise MixError(f"body file {str(path)!r} is not valid JSON: {exc}") from exc
    return data


def with_json_content_type(headers: dict[str, str]) -> dict[str, str]:
    if any(name.lower() == "content-type" for name in headers):
        return headers
    return {**headers, "Content-Type": "application/json"}


def parse_mix(text: str, base_url: str, headers: dict[str, str], base_dir: Path, source: str = "mix") -> list[Endpoint]:
    """The endpoints of a mix file's text; every error names the line."""
    endpoints = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        fields = line.split()
        if len(fields) not in (3, 4):
            raise MixError(f"{where}: expected 'WEIGHT METHOD PATH [@BODY.json]', got {raw.strip()!r}")
        weight_text, method, target = fields[:3]
        try:
            weight = float(weight_text)
        except ValueError:
            raise MixError(f"{where}: weight {weight_text!r} is not a number") from None
        if not weight > 0:
            raise MixError(f"{where}: weight must be > 0, got {weight_text}")
        method = method.upper()
        if method not in METHODS:
            raise MixError(f"{where}: unknown method {method!r}")
        body = None
        endpoint_headers = headers
        if len(fields) == 4:
            if not fields[3].startswith("@"):
                raise MixError(f"{where}: the body is given as @FILE, got {fields[3]!r}")
            try:
                body = json_body(base_dir / fields[3][1:])
            except MixError as exc:
                raise MixError(f"{where}: {exc}") from None
            endpoint_headers = with_json_content_type(headers)
        url = check_url(urljoin(base_url, target))
        endpoints.append(Endpoint(method, url, endpoint_headers, body, weight))
    if not endpoints:
        raise MixError(f"{source}: no endpoint in the mix file")
    return endpoints


def load_mix(path: Path, base_url: str, headers: dict[str, str]) -> list[Endpoint]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise MixError(f"cannot read mix file {str(path)!r}: {exc.strerror}") from exc
    return parse_mix(text, base_url, headers, path.parent, str(path))


def picker(items: list[T], weights: list[float], rng: random.Random) -> Callable[[], T]:
    """A function drawing one of ``items`` at random by weight (the only one when there is one)."""
    if len(items) == 1:
        only = items[0]
        return lambda: only
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    return lambda: items[bisect.bisect_right(cumulative, rng.random() * total)]
