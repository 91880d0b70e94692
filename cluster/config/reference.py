"""The settings reference (docs/configuration.md), rendered from the settings model.

Like the sample file (``sample.py``) it is rendered, never written by hand: every key with its
type, default, bounds, environment variable and description. ``fields()`` is also what the test
walks to require an upper bound on every count, size and list.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cluster.config.loader import SEED_ENV
from cluster.config.settings import Section, Settings

HEADER = """\
# Configuration reference

Every key of the settings model, rendered by `scripts/render-sample-config` (do not edit this
file: edit the model in `cluster/config/settings.py` and render again; a test fails when it is
stale). Sources, later wins: defaults < TOML file (`--config FILE`, else `./cluster.toml`, else
`/etc/cluster/cluster.toml`) < environment < command-line flags. Each key's environment variable
is `CLUSTER_<SECTION>_<KEY>`; the older names that also work are listed beside it. A commented
sample with every default: [deploy/cluster.toml](../deploy/cluster.toml).
"""


@dataclass(frozen=True)
class FieldRow:
    """One key of the model: where it is, its Python type and its constraints."""

    path: tuple[str, ...]
    annotation: Any
    info: FieldInfo

    @property
    def key(self) -> str:
        return ".".join(self.path)

    def bound(self, *kinds: type) -> Any:
        """The first constraint of these annotated_types kinds (``Le``, ``Lt``, ``MaxLen``...), or None."""
        for item in self.info.metadata:
            if isinstance(item, kinds):
                return item
        return None

    @property
    def base(self) -> Any:
        """The annotation without ``| None``."""
        args = [a for a in typing.get_args(self.annotation) if a is not type(None)]
        is_union = typing.get_origin(self.annotation) in (typing.Union, types.UnionType)
        return args[0] if is_union and len(args) == 1 else self.annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The Section class a field holds, directly or as the items of a list."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate
    return None


def fields(model: type[BaseModel] = Settings, path: tuple[str, ...] = ()) -> Iterator[FieldRow]:
    """Every leaf key, depth first; a list of sections (replicas, rules) yields its item's keys as ``key[].x``,
    a dict of sections (escalation per severity) as ``key.<key>.x``."""
    for name, info in model.model_fields.items():
        nested = _model_of(info.annotation)
        if nested is not None and typing.get_origin(info.annotation) in (list, dict):
            yield FieldRow(path + (name,), info.annotation, info)
            item = f"{name}[]" if typing.get_origin(info.annotation) is list else f"{name}.<key>"
            yield from fields(nested, path + (item,))
        elif nested is not None:
            yield from fields(nested, path + (name,))
        else:
            yield FieldRow(path + (name,), info.annotation, info)


def _type(row: FieldRow) -> str:
    text = getattr(row.base, "__name__", None) or str(row.base)
    if typing.get_origin(row.base) is typing.Literal:
        text = "one of " + ", ".join(json.dumps(a) for a in typing.get_args(row.base))
    elif typing.get_origin(row.base) is list:
        (item,) = typing.get_args(row.base) or (Any,)
        text = f"list of {getattr(item, '__name__', item)}"
    elif typing.get_origin(row.base) is dict:
        text = "table"
    return text + (" or unset" if row.base is not row.annotation else "")


def _default(row: FieldRow) -> str:
    if row.info.default_factory is not None:
        value = row.info.default_factory()
    elif row.info.default is PydanticUndefined:
        return "(required)" if "[]" in row.key or "<key>" in row.key else "(per queue)"
    else:
        value = row.info.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return "(see below)"
    return "unset" if value is None else f"`{json.dumps(value)}`"


def _bounds(row: FieldRow) -> str:
    parts = []
    for kind, attribute, sign in ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"),
                                  (annotated_types.Le, "le", "<="), (annotated_types.Lt, "lt", "<")):
        found = row.bound(kind)
        if found is not None:
            parts.append(f"{sign} {getattr(found, attribute)}")
    length = row.bound(annotated_types.MaxLen)
    if length is not None:
        parts.append(f"at most {length.max_length} items")
    return ", ".join(parts)


def _env(row: FieldRow) -> str:
    if "[]" in row.key or "<key>" in row.key:
        return ""
    names = ["CLUSTER_" + "_".join(row.path).upper()]
    names += sorted(seed for seed, (key, _) in SEED_ENV.items() if key == row.key)
    return ", ".join(f"`{n}`" for n in names)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_reference() -> str:
    """The whole page: one table per top-level section."""
    rows_by_section: dict[str, list[FieldRow]] = {}
    for row in fields():
        rows_by_section.setdefault(row.path[0], []).append(row)
    blocks = [HEADER]
    for section, rows in rows_by_section.items():
        lines = [f"## `[{section}]`", "", "| key | type | default | bounds | environment | what |",
                 "|---|---|---|---|---|---|"]
        for row in rows:
            lines.append(f"| `{row.key}` | {_cell(_type(row))} | {_cell(_default(row))} | {_bounds(row)} | "
                         f"{_env(row)} | {_cell(row.info.description or '')} |")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)
