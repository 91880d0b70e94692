"""docs/configuration.md is rendered from the settings model, and every count, size and list has an upper bound."""

from __future__ import annotations

import typing
from pathlib import Path

import annotated_types

from cluster.config.loader import LEAVES
from cluster.config.reference import fields, render_reference

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_reference_is_current() -> None:
    assert REFERENCE.read_text() == render_reference(), "run scripts/render-sample-config"


def test_reference_names_every_key_and_its_environment_variable() -> None:
    text = render_reference()
    for path in LEAVES:
        key = ".".join(path)
        assert f"| `{key}` |" in text, key
        assert f"`CLUSTER_{'_'.join(path).upper()}`" in text, key


def test_every_count_size_and_list_has_an_upper_bound() -> None:
    """A typo of a few zeros must be a config error, not a fork storm or a memory blow-up."""
    unbounded = []
    for row in fields():
        origin = typing.get_origin(row.base)
        if row.base is int and row.bound(annotated_types.Le, annotated_types.Lt) is None:
            unbounded.append(row.key)
        literal_keys = origin is dict and typing.get_origin(typing.get_args(row.base)[0]) is typing.Literal
        if origin in (list, dict) and not literal_keys and row.bound(annotated_types.MaxLen) is None:
            unbounded.append(row.key)
    assert unbounded == []


def test_the_walk_sees_nested_sections() -> None:
    keys = {row.key for row in fields()}
    assert {"queues.high.workers", "database.replicas[].weight", "ratelimit.rules[].limit",
            "alerts.escalation.<key>.steps[].channels"} <= keys
