"""scripts/audit.py never turns an audit that checked nothing into a pass."""

from __future__ import annotations

import importlib.util

from tests.support import ROOT

_spec = importlib.util.spec_from_file_location("audit_script", ROOT / "scripts" / "audit.py")
assert _spec and _spec.loader
audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit)


def test_nothing_looked_up_is_incomplete_not_a_pass() -> None:
    report = {"dependencies": [{"name": "aiohttp", "skip_reason": "Dependency not found on PyPI"}]}
    status, line = audit.verdict(report)
    assert status == audit.INCOMPLETE and "not a pass" in line


def test_partly_looked_up_is_incomplete() -> None:
    report = {"dependencies": [{"name": "a", "version": "1", "vulns": []}, {"name": "b", "skip_reason": "x"}]}
    assert audit.verdict(report)[0] == audit.INCOMPLETE
    assert audit.verdict({"dependencies": []})[0] == audit.INCOMPLETE


def test_vulnerabilities_fail_and_a_full_clean_check_passes() -> None:
    bad = {"dependencies": [{"name": "a", "version": "1", "vulns": [{"id": "PYSEC-1"}]},
                            {"name": "b", "skip_reason": "x"}]}
    status, line = audit.verdict(bad)
    assert status == 1 and "PYSEC-1" in line
    assert audit.verdict({"dependencies": [{"name": "a", "version": "1", "vulns": []}]})[0] == 0
