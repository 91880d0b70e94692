"""The supervisor's published health view: bounds on what is read, and a router following it."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from cluster.config.settings import DatabaseSettings, ReplicaSettings
from cluster.db.health_view import MAX_BYTES, ViewError, ViewReader, encode_round, parse_round, refusal, stale_after
from cluster.db.hosts import HostSpec
from cluster.db.probe import ProbeResult
from cluster.db.router import Router
from tests.support import run_async
from tests.unit.db.test_health_rounds import MB, FakePool, primary, replica

NAMES = ["p", "a", "b"]
DOWN = ProbeResult(False, error="OperationalError: connection refused")


def view(seq: int, at: float, *results: ProbeResult, names: list[str] = NAMES, publisher: str = "sup") -> str:
    return encode_round(publisher, seq, at, list(zip(names, results)))


def publish(path: Path, text: str) -> None:
    """Replace the file as the supervisor does (a new file renamed over it)."""
    fresh = path.with_name("fresh")
    fresh.write_text(text)
    os.replace(fresh, path)


def good(seq: int = 1, at: float = 100.0) -> str:
    return view(seq, at, primary(MB), replica(MB, age=0.5), replica(MB))


def test_a_round_survives_the_trip_through_the_file() -> None:
    shared = parse_round(good(7, 123.5).encode())
    assert shared.key == ("sup", 7) and shared.at == 123.5
    assert shared.results["p"] == primary(MB) and shared.results["a"] == replica(MB, age=0.5)
    down = parse_round(view(1, 1.0, DOWN, replica(MB), replica(MB)).encode())
    assert down.results["p"] == DOWN


@pytest.mark.parametrize("text", [
    b"", b"not json", b"[]", b"{}", b"\xff\xfe",
    json.dumps({"version": 2, "publisher": "s", "seq": 1, "at": 1.0, "hosts": []}).encode(),
    json.dumps({"version": 1, "publisher": "s", "seq": 1, "at": 1.0, "hosts": [], "extra": 1}).encode(),
    json.dumps({"version": 1, "publisher": "s", "seq": -1, "at": 1.0, "hosts": []}).encode(),
    json.dumps({"version": 1, "publisher": "s", "seq": 1, "at": "1.0", "hosts": []}).encode(),
    json.dumps({"version": 1, "publisher": "s", "seq": 1, "at": 1.0,
                "hosts": [{"host": "p", "ok": "yes"}]}).encode(),
    json.dumps({"version": 1, "publisher": "s", "seq": 1, "at": 1.0,
                "hosts": [{"host": "p", "ok": True, "lsn": 2**64}]}).encode(),
    json.dumps({"version": 1, "publisher": "s", "seq": 1, "at": 1.0,
                "hosts": [{"host": "p", "ok": True, "block_size": 0}]}).encode(),
    b'{"version": 1, "publisher": "s", "seq": 1, "at": NaN, "hosts": []}',
    json.dumps({"version": 1, "publisher": "s", "seq": 1, "at": 1.0,
                "hosts": [{"host": "p", "ok": True}, {"host": "p", "ok": False}]}).encode(),
    json.dumps({"version": 1, "publisher": "s", "seq": 1, "at": 1.0,
                "hosts": [{"host": f"h{i}", "ok": True} for i in range(66)]}).encode(),
    json.dumps({"version": 1, "publisher": "s", "seq": 1, "at": 1.0,
                "hosts": [{"host": "p", "ok": False, "error": "x" * 5000}]}).encode(),
    b" " * (MAX_BYTES + 1),
])
def test_garbage_and_out_of_bounds_views_are_refused(text: bytes) -> None:
    with pytest.raises(ViewError):
        parse_round(text)


def test_a_round_is_refused_when_stale_from_the_future_or_for_other_hosts() -> None:
    shared = parse_round(good(at=100.0).encode())
    max_age = stale_after(15.0, 2.0)
    assert max_age == 47.0
    assert refusal(shared, NAMES, 100.0 + 47.0, max_age) is None
    assert "old" in (refusal(shared, NAMES, 100.0 + 47.5, max_age) or "")
    assert refusal(shared, NAMES, 99.5, max_age) is None
    assert "future" in (refusal(shared, NAMES, 90.0, max_age) or "")
    assert "other hosts" in (refusal(shared, ["p", "a"], 100.0, max_age) or "")
    assert "other hosts" in (refusal(shared, [*NAMES, "c"], 100.0, max_age) or "")


def test_the_reader_rereads_a_replaced_file_and_refuses_what_it_should_not_open(tmp_path: Path) -> None:
    path = tmp_path / "db-health.json"
    reader = ViewReader(path, NAMES, 10.0)
    assert reader.current(100.0) == (None, f"no view at {path}")
    publish(path, good(1, 100.0))
    shared, _ = reader.current(100.0)
    assert shared is not None and shared.key == ("sup", 1)
    replacement = tmp_path / "next"
    replacement.write_text(good(2, 101.0))
    os.replace(replacement, path)
    shared, _ = reader.current(101.0)
    assert shared is not None and shared.key == ("sup", 2)
    assert reader.current(200.0)[0] is None  # the same file, now too old
    path.write_text("garbage")
    assert "malformed" in reader.current(101.0)[1]
    path.unlink()
    path.symlink_to(tmp_path / "next-target")
    (tmp_path / "next-target").write_text(good(3, 101.0))
    assert reader.current(101.0)[0] is None  # never followed through a symlink
    path.unlink()
    path.mkdir()
    assert reader.current(101.0)[0] is None
    path.rmdir()
    path.write_bytes(b" " * (MAX_BYTES + 10))
    assert "larger" in reader.current(101.0)[1]


class CountingProber:
    def __init__(self, result: ProbeResult) -> None:
        self.result = result
        self.probes = 0
        self.closed = 0

    async def probe(self) -> ProbeResult:
        self.probes += 1
        return self.result

    async def close(self) -> None:
        self.closed += 1


def router_with_view(path: Path) -> Router:
    settings = DatabaseSettings(url="postgresql://p/db", replicas=[ReplicaSettings(url="postgresql://a/db"),
                                                                   ReplicaSettings(url="postgresql://b/db")])
    specs = [HostSpec("p", "postgresql://p/db", "primary", 1), HostSpec("a", "postgresql://a/db", "replica", 1),
             HostSpec("b", "postgresql://b/db", "replica", 1)]
    router = Router(settings, specs, ViewReader(path, NAMES, 30.0))
    for host, result in zip(router.hosts, (primary(MB), replica(MB), replica(MB))):
        host.pool = FakePool()  # type: ignore[assignment]
        host.prober = CountingProber(result)  # type: ignore[assignment]
    return router


def probes(router: Router) -> int:
    return sum(h.prober.probes for h in router.hosts)  # type: ignore[attr-defined]


def test_a_router_follows_the_view_probes_itself_while_it_is_stale_and_logs_each_switch_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "db-health.json"
    router = router_with_view(path)
    caplog.set_level(logging.INFO, logger="db.health")

    async def scenario() -> None:
        await router.next_round(first=True)  # no view yet: probes itself
        assert probes(router) == 3 and router.status(pools=False)["health_source"] == "own probes"
        await router.next_round()
        assert probes(router) == 6
        publish(path, view(1, time.time(), primary(MB), DOWN, replica(MB)))
        await router.next_round()
        assert probes(router) == 6 and router.status(pools=False)["health_source"] == "supervisor"
        assert all(h.prober.closed == 1 for h in router.hosts)  # type: ignore[attr-defined]
        assert router.by_name["a"].state == "up"  # one failed round: not yet out
        await router.next_round()  # the same round again: not counted twice
        assert router.by_name["a"].state == "up"
        publish(path, view(2, time.time(), primary(MB), DOWN, replica(MB)))
        await router.next_round()
        assert router.by_name["a"].state == "down" and router.routing.fresh_replicas == ("b",)
        publish(path, view(3, time.time() - 100, primary(MB), DOWN, replica(MB)))  # the supervisor stalled
        await router.next_round()
        await router.next_round()
        assert probes(router) == 12 and router.status(pools=False)["health_source"] == "own probes"

    run_async(scenario)
    switches = [r.getMessage() for r in caplog.records if "probing the database hosts" in r.getMessage()
                or "following the supervisor" in r.getMessage()]
    assert len(switches) == 3, switches
    assert "no view" in switches[0] and "following" in switches[1] and "old" in switches[2]


def test_a_failed_request_takes_a_host_out_at_once_even_when_following_the_view(tmp_path: Path) -> None:
    path = tmp_path / "db-health.json"
    publish(path, good(1, time.time()))
    router = router_with_view(path)

    async def scenario() -> None:
        await router.next_round(first=True)
        assert probes(router) == 0 and router.routing.fresh_replicas == ("a", "b")
        router.host_failed(router.by_name["a"], OSError("connection reset"))
        assert router.routing.fresh_replicas == ("b",) and router.wake.is_set()
        publish(path, good(2, time.time()))
        await router.next_round()
        assert router.routing.fresh_replicas == ("b",)  # one good round is not enough to rejoin
        publish(path, good(3, time.time()))
        await router.next_round()
        assert router.routing.fresh_replicas == ("a", "b") and probes(router) == 0

    run_async(scenario)


def test_only_a_router_given_the_supervisors_view_follows_one() -> None:
    from cluster.config import Settings
    from cluster.db.router import router_from_settings

    database = {"url": "postgresql://p/db", "replicas": [{"url": "postgresql://a/db"}],
                "health_check_interval": 5.0, "connect_timeout": 1.0}
    alone = router_from_settings(Settings.model_validate({"database": database}))
    assert alone is not None and alone.view is None
    assert alone.status(pools=False)["health_source"] == "own probes"
    view = {**database, "health_view": "/run/x/db-health.json"}
    led = router_from_settings(Settings.model_validate({"database": view}))
    assert led is not None and led.view is not None
    assert led.view.path == Path("/run/x/db-health.json") and led.view.names == ["p:5432", "a:5432"]
    assert led.view.max_age == 16.0
