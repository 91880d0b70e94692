"""Name the user's modules that shadow a package the runtime needs (a ``redis.py`` beside the app, say).

Such a file wins the import, and what fails next is an error deep inside our code or a library's
("'redis' is not a package"), which says nothing of the real cause. The app check adds this note.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path
from types import ModuleType



def needed_top_level_names() -> set[str]:
    """The import names of the standard library, of ``cluster`` itself and of its installed requirements."""
    names = set(sys.stdlib_module_names) | {"cluster"}
    try:
        declared = requires("cluster") or []
    except PackageNotFoundError:
        return names
    wanted = {_normal(match.group()) for r in declared if "extra ==" not in r
              if (match := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r))}
    for module, dists in packages_distributions().items():
        if any(_normal(d) in wanted for d in dists):
            names.add(module)
    return names


def _normal(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def installed_roots() -> tuple[Path, ...]:
    """Where installed code lives: the interpreter's prefixes (stdlib and site-packages) and editable sources."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    cluster_pkg = sys.modules.get("cluster")
    if cluster_pkg is not None and getattr(cluster_pkg, "__file__", None):
        roots.add(Path(cluster_pkg.__file__).resolve().parent)
    return tuple(roots)


def shadowing(modules: Mapping[str, ModuleType], needed: Iterable[str], roots: tuple[Path, ...]) -> list[str]:
    """``name (path)`` of each loaded top-level module that we need but that came from outside ``roots``."""
    found = []
    for name in sorted(set(needed)):
        module = modules.get(name)
        path = getattr(module, "__file__", None) if module is not None else None
        if path is None:
            continue
        resolved = Path(path).resolve()
        if not any(resolved.is_relative_to(root) for root in roots):
            found.append(f"{name} ({resolved})")
    return found


def shadowing_note() -> str:
    """A sentence to add to an import failure, or "" when no module of ours is shadowed."""
    found = shadowing(sys.modules, needed_top_level_names(), installed_roots())
    if not found:
        return ""
    return (f"; your module {', '.join(found)} shadows the package of that name that cluster needs: "
            "rename it")
