"""The commented sample cluster.toml (deploy/cluster.toml), rendered from the settings model.

Rendered, not written by hand, so it cannot drift from the model: a test
renders it again and compares it with the file in deploy/.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from cluster.config.settings import Section, Settings

HEADER = """\
# cluster.toml: every key with its default (rendered by scripts/render-sample-config from the
# settings model; do not edit the copy in deploy/, edit the model and render it again).
#
# Sources, later wins: these defaults < this file < CLUSTER_<SECTION>_<KEY> environment
# variables (and the shorter names: REDIS_URL, DATABASE_URL, ...) < command-line flags.
# A key left commented out has no default (unset). `cluster config check FILE` validates it;
# `cluster config show` prints the effective values and where each came from.
"""


def _value(value: Any) -> str:
    """A TOML literal for a default (JSON's literals are TOML's for str, numbers, bools, lists)."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    return json.dumps(value)


def _section(model: BaseModel, path: tuple[str, ...]) -> list[str]:
    lines = [f"[{'.'.join(path)}]"]
    nested: list[str] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, Section):
            nested += ["", *_section(value, path + (name,))]
            continue
        env = "CLUSTER_" + "_".join(path + (name,)).upper()
        description = info.description or ""
        lines.append(f"# {description}" if env in description else f"# {description}  ({env})".replace("#   ", "# "))
        lines.append(f"# {name} =" if value is None else f"{name} = {_value(value)}")
    return lines + nested


def render_sample(settings: Settings | None = None) -> str:
    """The whole sample file."""
    settings = settings or Settings()
    blocks = [HEADER]
    for name in Settings.model_fields:
        blocks.append("\n".join(_section(getattr(settings, name), (name,))) + "\n")
    return "\n".join(blocks)
