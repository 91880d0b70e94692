"""The state-dir table: one entry per name, each used by the modules that share it, and the doc shows it."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import CodeType

from cluster.config import state_files
from cluster.config.state_files import ENTRIES, StateFile, markdown_table, read_target, write_target

#: The modules that share a state-dir file (imported, not grepped).
USERS = (
    "cluster.arbiter.exits", "cluster.arbiter.http_tier", "cluster.cli.common", "cluster.cli.replicas",
    "cluster.db.health_view", "cluster.monitoring.ack_links", "cluster.supervisor.core",
    "cluster.supervisor.leftovers", "cluster.supervisor.preflight", "cluster.supervisor.redis_log",
    "cluster.workers.app", "cluster.workers.control_client",
)
ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _codes(code: CodeType) -> list[CodeType]:
    nested = [c for const in code.co_consts if isinstance(const, CodeType) for c in _codes(const)]
    return [code, *nested]


def _module_codes(name: str) -> list[CodeType]:
    module = importlib.import_module(name)
    return _codes(compile(inspect.getsource(module), module.__file__ or name, "exec"))


def test_names_are_unique_and_relative() -> None:
    names = [entry.name for entry in ENTRIES]
    assert len(names) == len(set(names))
    assert all("/" not in name and name for name in names)
    defined = [value for value in vars(state_files).values() if isinstance(value, StateFile)]
    assert set(defined) == set(ENTRIES), "an entry defined but left out of ENTRIES"


def test_every_entry_is_used_and_no_user_spells_a_name() -> None:
    variable = {value: key for key, value in vars(state_files).items() if isinstance(value, StateFile)}
    used: set[str] = set()
    spelled: list[tuple[str, str]] = []
    names = {entry.name for entry in ENTRIES}
    for module in USERS:
        for code in _module_codes(module):
            used.update(code.co_names)
            spelled += [(module, const) for const in code.co_consts if const in names]
    assert [variable[e] for e in ENTRIES if variable[e] not in used] == []
    assert spelled == [], "a state-dir name spelled outside cluster/config/state_files.py"


def test_the_architecture_page_shows_the_table() -> None:
    assert markdown_table() in ARCHITECTURE.read_text(), "run: python -c 'from cluster.config.state_files " \
        "import markdown_table; print(markdown_table())' and paste it under \"The state dir\""


def test_target_round_trip_and_bad_contents(tmp_path: Path) -> None:
    path = state_files.WORKER_TARGET.path(tmp_path)
    assert read_target(path) is None
    write_target(tmp_path, 5)
    assert read_target(path) == 5 and path.stat().st_mode & 0o777 == 0o600
    for bad in ("zero\n", "0\n"):
        path.write_text(bad)
        assert read_target(path) is None
