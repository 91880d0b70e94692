#!/usr/bin/env python3
"""Audit the locked dependencies (requirements/test.lock) for known vulnerabilities with pip-audit.

pip-audit prints "No known vulnerabilities found" even when it could check
nothing (every package "not found" because the vulnerability service is
unreachable). This script counts what was really checked and says plainly
when the answer is incomplete. Exit status: 0 every dependency checked and
none vulnerable; 1 vulnerabilities found; 3 the audit could not run or
checked only part of the lock (unreachable database): not a pass, not a failure.

pip-audit lives in its own venv (.venv-audit): it is a tool, not a dependency.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "test.lock"
TOOL_VENV = ROOT / ".venv-audit"
PIP_AUDIT = "pip-audit>=2.7,<3"
INCOMPLETE = 3


def say(message: str) -> None:
    print(f"audit: {message}", file=sys.stderr)


def pip_audit() -> Path | None:
    """The pip-audit executable, installed into the tool venv on first use; None when it cannot be."""
    exe = TOOL_VENV / "bin" / "pip-audit"
    if exe.exists():
        return exe
    venv.create(TOOL_VENV, with_pip=True)
    result = subprocess.run([str(TOOL_VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                             "--disable-pip-version-check", PIP_AUDIT], capture_output=True, text=True)
    if result.returncode != 0:
        say(f"NOT RUN: pip-audit could not be installed ({result.stderr.strip().splitlines()[-1:]})")
        return None
    return exe


def verdict(report: dict) -> tuple[int, str]:
    """(exit status, one line) from pip-audit's JSON report."""
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if "skip_reason" in d]
    vulnerable = [d for d in deps if d.get("vulns")]
    checked = len(deps) - len(skipped)
    if vulnerable:
        names = ", ".join(f"{d['name']} {d['version']} ({', '.join(v['id'] for v in d['vulns'])})" for d in vulnerable)
        return 1, f"VULNERABLE: {names}"
    if not deps or skipped:
        return INCOMPLETE, (f"INCOMPLETE: checked {checked} of {len(deps)} dependencies; {len(skipped)} could not "
                            f"be looked up (is the vulnerability database reachable?): this is not a pass")
    return 0, f"no known vulnerabilities in all {checked} locked dependencies"


def main() -> int:
    exe = pip_audit()
    if exe is None:
        return INCOMPLETE
    result = subprocess.run([str(exe), "--disable-pip", "--progress-spinner", "off", "-f", "json", "-r", str(LOCK)],
                            capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        say(f"NOT RUN: the vulnerability database is unreachable ({last[:200]})")
        return INCOMPLETE
    status, line = verdict(report)
    say(line)
    return status


def run() -> int:
    try:
        return main()
    except Exception as exc:  # the audit's own trouble (no venv module, a timeout) is not a vulnerability
        say(f"NOT RUN: {type(exc).__name__}: {exc}")
        return INCOMPLETE


if __name__ == "__main__":
    sys.exit(run())
