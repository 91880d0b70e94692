"""The supervisor's database health component on real PostgreSQL: what it publishes, and when."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cluster.supervisor.db_health import DbHealth, with_view
from cluster.config import Settings
from cluster.db.health_view import VIEW_FILE, parse_round
from cluster.db.router import router_from_settings
from tests.pg_fixture import PgCluster
from tests.support import run_async

pytestmark = pytest.mark.integration


class FakeHost:
    """The two things the component reads of the supervisor."""

    def __init__(self, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir


def test_one_round_is_published_before_start_returns_and_the_routers_follow_it(
        pg_cluster: PgCluster, tmp_path: Path) -> None:
    settings = with_view(pg_cluster.settings(health_check_interval=60), tmp_path)
    assert settings.database.health_view == str(tmp_path / VIEW_FILE)
    component = DbHealth(FakeHost(settings, tmp_path))  # type: ignore[arg-type]

    async def scenario() -> tuple[dict, str]:
        await component.start()
        try:
            shared = parse_round((tmp_path / VIEW_FILE).read_bytes())
            router = router_from_settings(settings)
            assert router is not None
            await router.start()
            try:
                return {name: (r.ok, r.in_recovery) for name, r in shared.results.items()}, \
                    router.status()["health_source"]
            finally:
                await router.close()
        finally:
            await component.stop()

    published, source = run_async(scenario)
    assert published == {pg_cluster.host("primary"): (True, False),
                         **{pg_cluster.host(r["name"]): (True, True) for r in pg_cluster.replicas}}
    assert source == "supervisor"
    assert oct(os.stat(tmp_path / VIEW_FILE).st_mode & 0o777) == "0o600"
    assert component.status()["rounds"] == 1


def test_without_a_database_nothing_is_published(tmp_path: Path) -> None:
    settings = with_view(Settings(), tmp_path)
    assert settings.database.health_view is None
    component = DbHealth(FakeHost(settings, tmp_path))  # type: ignore[arg-type]
    asyncio.run(component.start())
    asyncio.run(component.stop())
    assert not (tmp_path / VIEW_FILE).exists() and component.status()["rounds"] == 0
