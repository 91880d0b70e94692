"""run_all's choice of bench scripts and the document it writes (no benchmark is run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.support import ROOT

BENCH_DIR = ROOT / "scripts" / "bench"


def _run_all() -> ModuleType:
    sys.path.insert(0, str(BENCH_DIR))
    try:
        spec = importlib.util.spec_from_file_location("bench_run_all", BENCH_DIR / "run_all.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH_DIR))


def test_only_executables_not_starting_with_underscore_or_run_all_are_bench_scripts(tmp_path: Path) -> None:
    for name, executable in (("queues", True), ("http", True), ("_common.py", True), ("run_all.py", True),
                             ("README.md", False), ("notes", False)):
        path = tmp_path / name
        path.write_text("#!/usr/bin/env python3\n")
        path.chmod(0o755 if executable else 0o644)
    (tmp_path / "subdir").mkdir()
    assert [p.name for p in _run_all().bench_scripts(tmp_path)] == ["http", "queues"]


def test_the_repository_ships_http_and_loadgen() -> None:
    names = [p.name for p in _run_all().bench_scripts()]
    assert "http" in names and "loadgen" in names


def test_document_has_machine_versions_tables_and_failures() -> None:
    run_all = _run_all()
    results = [
        {"script": "http", "command": "scripts/bench/http --json-out OUT.json", "seconds": 12.0, "title": "HTTP",
         "columns": ["server", "req/s"], "rows": [["a|b", 1234.5], ["c", None]], "notes": ["pinned"]},
        {"script": "queues", "command": "scripts/bench/queues --json-out OUT.json", "seconds": 1.0,
         "error": "exit code 3"},
    ]
    text = run_all.render(results, {"cores": 2, "cpu": "x"}, {"python": "3.11"}, quick=False, command="make bench")
    assert "## Machine" in text and "| 2 | x |" in text
    assert "| python | 3.11 |" in text
    assert "## HTTP" in text and "| a\\|b | 1,234 |" in text and "| c | - |" in text and "- pinned" in text
    assert "## queues" in text and "**FAILED**: exit code 3" in text
