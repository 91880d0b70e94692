"""Fixtures of the dashboard tests: a real redis-server, and Debian's chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg_fixture import pg_cluster  # noqa: F401  (the session-scoped PostgreSQL cluster)
from tests.redis_fixture import redis_server, redis_url  # noqa: F401  (fixtures)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium from the distribution (scripts/install-system-deps), never a downloaded one."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-system-deps installs the chromium package")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def live_text(tab: Any, selector: str, expected: str, timeout: float = 60.0) -> None:
    """Wait until ``selector`` shows ``expected`` (updated by the stream, no reload)."""
    tab.wait_for_function(
        "([s, t]) => Array.from(document.querySelectorAll(s)).some(e => e.textContent.includes(t))",
        arg=[selector, expected], timeout=timeout * 1000)
