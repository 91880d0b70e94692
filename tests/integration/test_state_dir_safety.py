"""The state dir against another local user (issue 24, finding 1 and 8): links are never followed, foreign
processes are never waited for nor killed, and the ack-link key is never short.

Real `cluster start` processes, a real redis-server, a real process of another uid.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import ClusterProcess, free_port, run_cli, wait_for

pytestmark = pytest.mark.integration
# The queue tier with one pool process: the embedded redis-server runs, the two cores stay free.
ONE_POOL = {
    "CLUSTER_QUEUES_JOBS_MODULE": "tests.queues.jobs",
    "CLUSTER_QUEUES_MEDIUM_WORKERS": "0", "CLUSTER_QUEUES_LOW_WORKERS": "0",
    "CLUSTER_QUEUES_BACKGROUND_WORKERS": "0", "CLUSTER_QUEUES_HIGH_WORKERS": "1",
}
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="another user's link and process need root to set up")


def snapshot(directory: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under ``directory``: its mode and, for a file, its bytes."""
    found = {".": (os.lstat(directory).st_mode, None)}
    for path in sorted(directory.rglob("*")):
        st = os.lstat(path)
        found[str(path.relative_to(directory))] = (st.st_mode, path.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return found


def start_fails(state_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("start", "--bind", f"127.0.0.1:{free_port()}", "--state-dir", str(state_dir), "--workers", "1",
                   env={"CLUSTER_REDIS_EMBEDDED": "false", "CLUSTER_METRICS_BIND": "", **(env or {})}, timeout=60)


@as_root
def test_a_symlinked_state_dir_is_refused_as_root_and_its_target_left_untouched(tmp_path: Path) -> None:
    # A dir of root's that another user wants chmodded and emptied, and the link to it they planted in a
    # world-writable dir.
    theirs = tmp_path / "theirs"
    (theirs / "metrics").mkdir(parents=True)
    (theirs / "metrics" / "data.db").write_text("root's data\n")
    (theirs / "notes.txt").write_text("mine\n")
    os.chmod(theirs, 0o755)
    public = tmp_path / "pub"
    public.mkdir()
    os.chmod(public, 0o1777)
    link = public / "cs"
    link.symlink_to(theirs)
    os.lchown(link, 65534, 65534)
    before = snapshot(theirs)

    result = start_fails(link)

    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "symlink" in line and str(link) in line
    assert snapshot(theirs) == before  # not chmodded, metrics/ not deleted, nothing written
    assert run_cli("config", "check", env={"CLUSTER_SERVER_STATE_DIR": str(link)}).returncode == 2


def test_links_planted_for_redis_pid_and_alerts_secret_are_never_followed(
        cluster_factory: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    for name in ("redis.pid", "alerts.secret"):
        (state / name).symlink_to(victim)

    cluster = cluster_factory(name="state", queues=True, env=ONE_POOL, workers=1)

    redis_row = wait_for(lambda: [r for r in cluster.status()["processes"] if r["group"] == "redis" and r["pid"]],
                         what="the embedded redis-server")
    assert victim.read_text() == "precious\n"
    pidfile = wait_for(lambda: (state / "redis.pid").is_file() and not (state / "redis.pid").is_symlink()
                       and (state / "redis.pid").read_text().strip(), what="redis-server's own pid file")
    assert int(pidfile) == redis_row[0]["pid"]
    secret = state / "alerts.secret"
    st = os.lstat(secret)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert len(secret.read_bytes().strip()) >= 64  # 32 random bytes, hex


def test_a_link_planted_for_the_redis_data_dir_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "redis").symlink_to(elsewhere)

    result = start_fails(state, {"CLUSTER_REDIS_EMBEDDED": "true", **ONE_POOL})

    assert result.returncode == 2, result.stderr[-2000:]
    assert "symlink" in result.stderr and str(state / "redis") in result.stderr
    assert list(elsewhere.iterdir()) == [] and stat.S_IMODE(os.stat(elsewhere).st_mode) == 0o755


@pytest.fixture
def foreign_process() -> Iterator[Callable[[Path], psutil.Process]]:
    """A process of uid nobody whose command line names a state dir's settings file, as a pool's would.

    Started with setuid in the child (not through runuser, whose own root process would carry the same
    command line), as another local user would start it.
    """
    started: list[subprocess.Popen[bytes]] = []

    def make(state: Path) -> psutil.Process:
        settings = str(state.resolve() / "settings.json")
        proc = subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(600)", "cluster.queues.pool",
                                 settings], user=65534, group=65534, cwd="/")
        started.append(proc)
        theirs = psutil.Process(proc.pid)
        assert theirs.uids().real == 65534 and settings in theirs.cmdline()
        return theirs

    yield make
    for proc in started:
        proc.kill()
        proc.wait()


@as_root
def test_a_leftover_process_of_another_uid_is_left_alone_and_not_waited_for(
        cluster_factory: Callable[..., ClusterProcess], tmp_path: Path,
        foreign_process: Callable[[Path], psutil.Process]) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    theirs = foreign_process(state)

    cluster = cluster_factory(name="state", queues=True, env=ONE_POOL, workers=1)

    assert theirs.is_running() and theirs.status() != psutil.STATUS_ZOMBIE
    waited = [line["message"] for line in cluster.logs()
              if "died without stopping" in line.get("message", "") or "killing leftover" in line.get("message", "")]
    assert waited == []
