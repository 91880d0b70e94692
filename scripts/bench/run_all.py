#!/usr/bin/env python3
"""Run every bench script in scripts/bench/ and write docs/benchmarks.md.

A bench script is an executable file here whose name does not start with
``_`` or ``run_all`` (see README.md for the contract). Each runs with
``--json-out`` (plus ``--quick`` when given here); its table goes into the
document with the machine, the versions and the command. A failing script is
reported in the document and makes this exit 1, after the others have run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import fmt

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
PACKAGES = ("gunicorn", "aiohttp", "uvloop", "hdrhistogram", "redis", "hiredis", "psycopg", "psutil")
TOOLS = {"redis-server": ["redis-server", "--version"], "wrk": ["wrk", "-v"], "postgres": ["postgres", "--version"]}


def bench_scripts(directory: Path = BENCH_DIR) -> list[Path]:
    """The executable bench scripts of ``directory``, by name."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and os.access(p, os.X_OK) and not p.name.startswith(("_", "run_all", ".")))


def _first_line(argv: list[str]) -> str | None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else None


def machine() -> dict[str, Any]:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cores": len(os.sched_getaffinity(0)), "memory": f"{mem_kb / 1024 / 1024:.1f} GiB", "cpu": cpu_model,
            "kernel": f"{platform.system()} {platform.release()}",
            "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    for tool, argv in TOOLS.items():
        found[tool] = _first_line(argv) or "not found"
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    found["cluster commit"] = commit or "unknown"
    return found


def run_script(script: Path, quick: bool) -> dict[str, Any]:
    """Run one script (output streams through) and return its JSON table, or why it failed."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, str(script), "--json-out", str(out), *(["--quick"] if quick else [])]
        shown = f"scripts/bench/{script.name} --json-out OUT.json" + (" --quick" if quick else "")
        print(f"\n=== {shown}", flush=True)
        started = time.monotonic()
        code = subprocess.run(argv, cwd=ROOT).returncode
        took = time.monotonic() - started
        if code != 0 or not out.exists():
            return {"script": script.name, "command": shown, "seconds": took,
                    "error": f"exit code {code}" + ("" if out.exists() else ", no JSON written")}
        try:
            table = json.loads(out.read_text())
            missing = {"title", "columns", "rows"} - set(table)
            if missing:
                raise ValueError(f"missing {sorted(missing)}")
        except ValueError as exc:
            return {"script": script.name, "command": shown, "seconds": took, "error": f"bad JSON: {exc}"}
        return {"script": script.name, "command": shown, "seconds": took, **table}


def markdown_table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return lines


def render(results: list[dict[str, Any]], machine_info: dict[str, Any], version_info: dict[str, str],
           quick: bool, command: str) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks", "",
        f"Written by `{command}` on {when}. "
        + ("QUICK run: one short run per case, a smoke check, not figures to quote."
           if quick else "Figures are medians of at least 3 runs unless a note says otherwise."),
        "Compare rows of one table (measured in the same run, alternating); figures on a 2-core VM vary "
        "20-40 % between identical runs.", "",
        "## Machine", "", *markdown_table(list(machine_info), [list(machine_info.values())]), "",
        "## Versions", "", *markdown_table(["component", "version"], [[k, v] for k, v in version_info.items()]), "",
    ]
    for result in results:
        lines += [f"## {result.get('title', result['script'])}", "",
                  f"`{result['command']}` ({result['seconds']:.0f} s)", ""]
        if "error" in result:
            lines += [f"**FAILED**: {result['error']} (its output is in the `make bench` log).", ""]
            continue
        lines += [*markdown_table(result["columns"], result["rows"]), ""]
        lines += [f"- {note}" for note in result.get("notes", [])]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script (a smoke check)")
    parser.add_argument("--only", action="append", default=[], help="run only this script (repeatable)")
    parser.add_argument("--doc", type=Path, default=DOC, help="where to write the document")
    args = parser.parse_args()
    scripts = [s for s in bench_scripts() if not args.only or s.name in args.only]
    if not scripts:
        print("no bench script found", file=sys.stderr)
        return 1
    machine_info, version_info = machine(), versions()
    results = [run_script(script, args.quick) for script in scripts]
    command = "make bench" if os.environ.get("MAKELEVEL") else shlex.join(["scripts/bench/run_all.py", *sys.argv[1:]])
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(render(results, machine_info, version_info, args.quick, command))
    failed = [r["script"] for r in results if "error" in r]
    print(f"\nwrote {args.doc}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
