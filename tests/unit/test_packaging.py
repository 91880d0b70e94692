"""The public API, the version and the shadowing note: what a user of the installed package relies on."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings
from importlib.metadata import version
from pathlib import Path

import cluster
from cluster.supervisor.shadowing import needed_top_level_names, shadowing

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_imports_and_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the public names themselves are never deprecated
        for name in cluster.__all__:
            assert getattr(cluster, name) is not None, name
            assert f"`{name}`" in readme, f"{name} is exported but the README's public API table omits it"
    assert "DB_KEY" in cluster.__all__ and "job" in cluster.__all__ and "__version__" in cluster.__all__


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        cluster.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("cluster.no_such_name did not raise")


def test_importing_cluster_loads_no_server_or_driver() -> None:
    code = ("import sys, cluster; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'aiohttp', 'redis', 'psycopg', 'gunicorn', 'prometheus_client'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_version_is_the_metadata_one() -> None:
    done = subprocess.run([sys.executable, "-m", "cluster.cli", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cluster, version {version('cluster')}"
    assert cluster.__version__ == version("cluster")
    assert f'version = "{cluster.__version__}"' in (ROOT / "pyproject.toml").read_text()
    assert f"## [{cluster.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def _module(name: str, path: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = path
    return module


def test_a_module_outside_the_installed_roots_is_named(tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "site-packages"
    modules = {
        "redis": _module("redis", str(tmp_path / "app" / "redis.py")),       # the user's file: shadows
        "aiohttp": _module("aiohttp", str(site / "aiohttp" / "__init__.py")),  # installed
        "myapp": _module("myapp", str(tmp_path / "app" / "myapp.py")),       # the user's own name: fine
        "json": _module("json", str(tmp_path / "app" / "json.py")),          # shadows the stdlib
    }
    found = shadowing(modules, {"redis", "aiohttp", "json"}, (tmp_path / "venv",))
    assert found == [f"json ({tmp_path / 'app' / 'json.py'})", f"redis ({tmp_path / 'app' / 'redis.py'})"]


def test_the_needed_names_are_our_dependencies_and_the_stdlib() -> None:
    needed = needed_top_level_names()
    assert {"redis", "aiohttp", "psycopg", "gunicorn", "cluster", "json", "asyncio"} <= needed
    assert "pytest" not in needed  # a test extra, not needed at run time
