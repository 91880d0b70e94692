"""deploy/cluster.toml is rendered from the settings model: current, complete, and it loads."""

from __future__ import annotations

import tomllib
from pathlib import Path

from cluster.config import Settings, load
from cluster.config.loader import LEAVES
from cluster.config.sample import render_sample

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "cluster.toml"


def test_sample_is_current() -> None:
    assert SAMPLE.read_text() == render_sample(), "run scripts/render-sample-config"


def test_sample_loads_to_the_defaults() -> None:
    loaded = load(config_file=SAMPLE, env={}, use_default_files=False)
    assert loaded.settings == Settings()


def test_sample_names_every_key() -> None:
    text = SAMPLE.read_text()
    data = tomllib.loads(text)
    for path in LEAVES:
        node: object = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        env = "CLUSTER_" + "_".join(path).upper()
        assert node is not None or f"# {path[-1]} =" in text, path
        assert env in text, env
