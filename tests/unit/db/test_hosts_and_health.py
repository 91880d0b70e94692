from cluster.config import load
from cluster.db.transitions import DOWN_RETRY, next_delay
from cluster.db.hosts import host_name, hosts_from_settings
from cluster.db.router import router_from_settings
from cluster.workers.db_routes import health_result


def test_hosts_come_from_database_url_and_the_seed_replica_variables() -> None:
    settings = load(env={
        "DATABASE_URL": "postgresql://app:secret@db0:5432/app",
        "DB_READ_REPLICA_1": "postgresql://app:secret@db1/app", "DB_READ_REPLICA_1_WEIGHT": "3",
        "DB_READ_REPLICA_2": "postgresql://app:secret@db2:6432/app", "DB_READ_REPLICA_2_WEIGHT": "2",
    }, use_default_files=False).settings
    specs = hosts_from_settings(settings)
    assert [(s.name, s.role, s.weight) for s in specs] == [
        ("db0:5432", "primary", 1), ("db1:5432", "replica", 3), ("db2:6432", "replica", 2)]
    assert all("secret" not in s.name for s in specs)


def test_duplicate_hosts_get_distinct_names() -> None:
    settings = load(env={"DATABASE_URL": "postgresql://h/a", "DB_READ_REPLICA_1": "postgresql://h/a"},
                    use_default_files=False).settings
    assert [s.name for s in hosts_from_settings(settings)] == ["h:5432", "h:5432#1"]
    assert host_name("postgresql:///app?host=/run/pg") == "/run/pg:5432"
    assert host_name("postgresql:///app") == "localhost:5432"


def test_no_database_url_means_no_router() -> None:
    assert router_from_settings(load(env={}, use_default_files=False).settings) is None


def test_rounds_are_jittered_and_quick_while_a_host_is_down() -> None:
    assert next_delay(15.0, False, 0.0) == 13.5
    assert next_delay(15.0, False, 0.999) < 16.5
    assert next_delay(15.0, True, 0.5) == DOWN_RETRY
    assert next_delay(0.2, True, 0.5) == 0.2


def _status(writes_refused: str | None = None, unusable: bool = False) -> dict:
    return {"writes_refused": writes_refused, "replicas_unusable": unusable, "fallback": "primary",
            "hosts": [{"state": "up"}, {"state": "down"}]}


def test_health_passes_warns_when_replicas_are_unusable_or_writes_refused_and_never_fails() -> None:
    assert health_result(_status()) == ("database", {"status": "pass", "observedValue": 1,
                                                     "observedUnit": "hosts up of 2", "output": None})
    name, result = health_result(_status(unusable=True))
    assert result["status"] == "warn" and "stale or down" in result["output"]
    name, result = health_result(_status(writes_refused="no reachable host claims to be primary"))
    assert result["status"] == "warn" and "writes refused" in result["output"]
