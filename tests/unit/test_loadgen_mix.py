"""The weighted endpoint mix file, headers and bodies."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from cluster.loadgen.mix import Endpoint, MixError, parse_headers, parse_mix, picker


def test_mix_file_joins_paths_and_reads_json_bodies(tmp_path: Path) -> None:
    (tmp_path / "item.json").write_text('{"name": "x"}')
    text = "# weights\n80 GET /ping\n15 get http://other:9000/health  # absolute\n5 POST /items @item.json\n"
    endpoints = parse_mix(text, "http://host:8000/base", {"X-A": "1"}, tmp_path)
    assert [(e.method, e.url, e.weight) for e in endpoints] == [
        ("GET", "http://host:8000/ping", 80.0), ("GET", "http://other:9000/health", 15.0),
        ("POST", "http://host:8000/items", 5.0)]
    assert endpoints[2].body == b'{"name": "x"}'
    assert endpoints[2].headers == {"X-A": "1", "Content-Type": "application/json"}
    assert endpoints[0].headers == {"X-A": "1"} and endpoints[0].body is None


@pytest.mark.parametrize("text, message", [
    ("10 GET", "mix:1: expected 'WEIGHT METHOD PATH"),
    ("\nx GET /a", "mix:2: weight 'x' is not a number"),
    ("0 GET /a", "mix:1: weight must be > 0"),
    ("1 FETCH /a", "mix:1: unknown method 'FETCH'"),
    ("1 POST /a body.json", "mix:1: the body is given as @FILE"),
    ("1 POST /a @missing.json", "mix:1: cannot read body file"),
    ("1 POST /a @bad.json", "mix:1: body file"),
    ("1 GET ftp://x/", "is not an http(s) URL"),
    ("# nothing\n", "no endpoint"),
])
def test_mix_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(MixError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_mix(text, "http://host/", {}, tmp_path)


def test_headers_parse_and_reject_garbage() -> None:
    assert parse_headers(["Authorization: Bearer a:b", "X-Empty:"]) == {"Authorization": "Bearer a:b", "X-Empty": ""}
    with pytest.raises(MixError):
        parse_headers(["no-colon"])


def test_picker_follows_the_weights() -> None:
    endpoints = [Endpoint("GET", f"http://h/{n}", weight=w) for n, w in (("a", 80), ("b", 15), ("c", 5))]
    pick = picker(endpoints, [e.weight for e in endpoints], random.Random(1))
    counts = Counter(pick().url for _ in range(20_000))
    assert 0.77 < counts["http://h/a"] / 20_000 < 0.83
    assert 0.13 < counts["http://h/b"] / 20_000 < 0.17
    assert 0.035 < counts["http://h/c"] / 20_000 < 0.065
    only = picker(endpoints[:1], [1.0], random.Random(1))
    assert only() is endpoints[0]
