"""Builds the effective settings from its sources and remembers where each value came from.

Sources, later wins: defaults < TOML file < environment < command-line flags.
Every problem is reported at once, one line each, naming the key and its source.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from cluster.config.masking import mask
from cluster.config.settings import Section, Settings, cross_field_problems

DEFAULT_FILES: tuple[Path, ...] = (Path("cluster.toml"), Path("/etc/cluster/cluster.toml"))
CONFIG_FILE_ENV = "CLUSTER_CONFIG"
# CLUSTER_* variables that are not settings: the config file's path, and the
# role the supervisor gives each child.
NOT_SETTINGS = frozenset({CONFIG_FILE_ENV, "CLUSTER_PROCESS_ROLE"})

# The seed system's variable names, kept as they are: name -> (key, scale).
# A scale of 0.001 turns the seed's milliseconds into our seconds.
SEED_ENV: dict[str, tuple[str, float | None]] = {
    "CLUSTER_MIN_WORKERS": ("workers.min", None),
    "CLUSTER_MAX_WORKERS": ("workers.max", None),
    "SCALE_UP_THRESHOLD": ("autoscale.scale_up_threshold", None),
    "SCALE_DOWN_THRESHOLD": ("autoscale.scale_down_threshold", None),
    "QUEUE_HIGH_WORKERS": ("queues.high.workers", None),
    "QUEUE_MEDIUM_WORKERS": ("queues.medium.workers", None),
    "QUEUE_LOW_WORKERS": ("queues.low.workers", None),
    "QUEUE_BACKGROUND_WORKERS": ("queues.background.workers", None),
    "REPLICA_HEALTH_CHECK_INTERVAL": ("database.health_check_interval", 0.001),
    "MONITORING_ALERT_COOLDOWN": ("monitoring.alert_cooldown", 0.001),
    "MONITORING_METRICS_INTERVAL": ("monitoring.metrics_interval", 0.001),
    "MONITORING_CPU_WARNING": ("monitoring.cpu_warning", None),
    "MONITORING_MEMORY_WARNING": ("monitoring.memory_warning", None),
    "DB_POOL_SIZE": ("database.pool_size", None),
    "REDIS_URL": ("redis.url", None),
    "REDIS_SENTINELS": ("redis.sentinels", None),
    "REDIS_SENTINEL_MASTER": ("redis.sentinel_master", None),
    "DATABASE_URL": ("database.url", None),
}
REPLICA_ENV = re.compile(r"^DB_READ_REPLICA_(\d+)(_WEIGHT)?$")


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class LoadedConfig:
    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    file: Path | None = None

    def source(self, key: str) -> str:
        """Where the value of a dotted key came from."""
        return _lookup_source(self.sources, key)


def _leaf_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every leaf key of the model, with its annotation."""
    leaves: dict[tuple[str, ...], Any] = {}
    for name, info in model.model_fields.items():
        path = prefix + (name,)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            leaves.update(_leaf_fields(annotation, path))
        else:
            leaves[path] = annotation
    return leaves


LEAVES = _leaf_fields(Settings)
SECTIONS = {path[:i] for path in LEAVES for i in range(1, len(path))}
ENV_NAMES: dict[str, tuple[str, ...]] = {"CLUSTER_" + "_".join(p).upper(): p for p in LEAVES}


def _kind(annotation: Any) -> str:
    """'list', 'dict' or 'scalar': how an environment string is turned into a value."""
    for candidate in (annotation, *get_args(annotation)):
        origin = get_origin(candidate) or candidate
        if origin is list:
            return "list"
        if origin is dict:
            return "dict"
    return "scalar"


def _flatten(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in data.items():
        path = prefix + (str(key),)
        if isinstance(value, Mapping) and path in SECTIONS:
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def _assign(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _lookup_source(sources: Mapping[str, str], key: str) -> str:
    parts = key.split(".")
    while parts:
        found = sources.get(".".join(parts))
        if found:
            return found
        parts.pop()
    return "default"


def resolve_file(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    """The TOML file to read: the one given, else ./cluster.toml, else /etc/cluster/cluster.toml."""
    given = explicit or env.get(CONFIG_FILE_ENV)
    if given:
        return Path(given)
    for candidate in DEFAULT_FILES:
        if candidate.is_file():
            return candidate
    return None


def _read_file(path: Path, problems: list[str]) -> dict[tuple[str, ...], Any]:
    try:
        with path.open("rb") as handle:
            return _flatten(tomllib.load(handle))
    except FileNotFoundError:
        problems.append(f"config file {path}: not found")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"config file {path}: not valid TOML: {exc}")
    except OSError as exc:
        problems.append(f"config file {path}: cannot be read: {exc.strerror}")
    return {}


def _env_value(name: str, raw: str, path: tuple[str, ...]) -> Any:
    kind = _kind(LEAVES.get(path))
    if kind == "list":
        if raw.lstrip().startswith("["):  # a JSON list: the only way to give a list of tables (ratelimit.rules)
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{name}: not a JSON list: {exc}") from None
        return [item.strip() for item in raw.split(",") if item.strip()]
    if kind == "dict":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: not a JSON object: {exc}") from None
    return None if raw == "" else raw


def _read_env(env: Mapping[str, str], problems: list[str]) -> tuple[dict[tuple[str, ...], Any], dict[tuple[str, ...], str]]:
    values: dict[tuple[str, ...], Any] = {}
    labels: dict[tuple[str, ...], str] = {}
    replicas: dict[int, dict[str, Any]] = {}
    replica_names: dict[int, str] = {}

    for name, (key, scale) in SEED_ENV.items():
        if name not in env:
            continue
        raw = env[name]
        path = tuple(key.split("."))
        if scale is not None:
            try:
                values[path] = float(raw) * scale
            except ValueError:
                problems.append(f"{key}: {raw!r} is not a number of milliseconds (from env {name})")
                continue
        else:
            values[path] = _env_value(name, raw, path)
        labels[path] = f"env {name}"

    for name, raw in env.items():
        match = REPLICA_ENV.match(name)
        if match:
            index = int(match.group(1))
            entry = replicas.setdefault(index, {})
            if match.group(2):
                entry["weight"] = raw
            else:
                entry["url"] = raw
                replica_names[index] = name
            continue
        if not name.startswith("CLUSTER_") or name in SEED_ENV or name in NOT_SETTINGS:
            continue
        path = ENV_NAMES.get(name)
        if path is None:
            problems.append(f"{name}: unknown key (from env {name}); see `cluster config show` for the valid keys")
            continue
        try:
            values[path] = _env_value(name, raw, path)
        except ValueError as exc:
            problems.append(f"{'.'.join(path)}: {exc} (from env {name})")
            continue
        labels[path] = f"env {name}"

    if replicas:
        path = ("database", "replicas")
        values[path] = [replicas[i] for i in sorted(replicas)]
        labels[path] = "env " + ",".join(replica_names.get(i, f"DB_READ_REPLICA_{i}") for i in sorted(replicas))
    return values, labels


def load(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    use_default_files: bool = True,
) -> LoadedConfig:
    """Load the effective settings; raise ConfigError listing every problem.

    ``overrides`` maps dotted keys to values given on the command line.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    # Start from the defaults so that a partial section (one key of
    # queues.high, say) keeps the section's other defaults.
    raw: dict[str, Any] = Settings().model_dump()
    labels: dict[tuple[str, ...], str] = {}

    path = resolve_file(config_file, env) if (config_file or use_default_files) else None
    if path is not None:
        for key, value in _read_file(path, problems).items():
            _assign(raw, key, value)
            labels[key] = f"file {path}"

    env_values, env_labels = _read_env(env, problems)
    for key, value in env_values.items():
        _assign(raw, key, value)
    labels.update(env_labels)

    for dotted, value in (overrides or {}).items():
        key = tuple(dotted.split("."))
        _assign(raw, key, value)
        labels[key] = "cli"

    sources = {".".join(k): v for k, v in labels.items()}
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            source = _lookup_source(sources, key)
            if error["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown key (from {source})")
            else:
                message = error["msg"].removeprefix("Value error, ")
                problems.append(f"{key}: {message}, got {mask(key, error.get('input'))!r} (from {source})")
    if settings is not None:
        for key, message in cross_field_problems(settings):
            problems.append(f"{key}: {message} (from {_lookup_source(sources, key)})")
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return LoadedConfig(settings=settings, sources=sources, file=path)


def effective(loaded: LoadedConfig) -> list[tuple[str, Any, str]]:
    """(key, masked value, source) for every key, in model order."""
    dumped = loaded.settings.model_dump()
    rows = []
    for path in LEAVES:
        node: Any = dumped
        for part in path:
            node = node[part]
        key = ".".join(path)
        rows.append((key, mask(key, node), loaded.source(key)))
    return rows
