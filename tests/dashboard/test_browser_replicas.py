"""A replica that stops turns "down" on the open Replicas page, without a reload (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.dashboard.conftest import live_text
from tests.integration.replicas.test_surfaces import db_env
from tests.pg_fixture import PgCluster
from tests.support import ClusterProcess

pytestmark = pytest.mark.integration


def test_a_stopped_replica_turns_down_on_the_page(pg_cluster: PgCluster, browser: Any,  # noqa: F811
                                                   cluster_factory: Callable[..., ClusterProcess]) -> None:
    cluster = cluster_factory(env=db_env(pg_cluster), workers=1)
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{cluster.metrics_port}/dashboard/replicas")  # loopback: no login
    page.wait_for_selector("body[data-conn=live]", timeout=60_000)
    host = pg_cluster.host("replica1")

    def shows(state: str, timeout: float) -> None:
        page.wait_for_function(
            "([host, state]) => Array.from(document.querySelectorAll('#live tr')).some(r => r.cells[0]"
            " && r.cells[0].textContent === host && r.querySelector('[data-test=replica-state]').textContent"
            " === state)", arg=[host, state], timeout=timeout * 1000)

    shows("up", 60)
    page.evaluate("window.notReloaded = true")
    try:
        pg_cluster.stop("replica1")
        shows("down", 90)
        live_text(page, "tr", "up → down", timeout=30)
        assert page.evaluate("window.notReloaded") is True
    finally:
        page.close()
        pg_cluster.restore()
