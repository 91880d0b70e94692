"""The state dir's entries on real files (issue 24, finding 1 and 8): links refused or replaced, never followed;
the ack-link key never short; only this user's processes are leftovers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cluster.monitoring import ack_links
from cluster.supervisor import preflight
from cluster.supervisor.leftovers import is_ours
from cluster.supervisor.state_dir import StateDirError, located, prepare, private_subdir


@pytest.mark.parametrize("before", [b"", b"\n", b"ab", b"0" * 63])
def test_an_empty_or_short_alerts_secret_is_regenerated(tmp_path: Path, before: bytes) -> None:
    (tmp_path / "alerts.secret").write_bytes(before)
    key = ack_links.install_secret(tmp_path, None)
    assert len(key) >= 64 and key == (tmp_path / "alerts.secret").read_bytes()
    assert stat.S_IMODE(os.stat(tmp_path / "alerts.secret").st_mode) == 0o600
    assert ack_links.install_secret(tmp_path, None) == key  # kept from then on
    assert not [p for p in tmp_path.iterdir() if p.name != "alerts.secret"]  # no temp file left behind


def test_a_linked_alerts_secret_is_replaced_never_read_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"f" * 80)
    state = tmp_path / "state"
    state.mkdir()
    (state / "alerts.secret").symlink_to(victim)
    key = ack_links.install_secret(state, None)
    assert key != victim.read_bytes() and victim.read_bytes() == b"f" * 80
    assert stat.S_ISREG(os.lstat(state / "alerts.secret").st_mode)


def test_a_state_dir_that_is_a_link_is_refused_before_it_is_resolved(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir(mode=0o755)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(StateDirError, match="symlink"):
        located(str(link))
    assert preflight.state_dir_config_problems(str(link))[0].startswith("server.state_dir: ")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755
    with pytest.raises(StateDirError, match="symlink"):
        prepare(link)  # a link made after the check: still not followed
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755


@pytest.mark.parametrize("where", ["/proc/cluster", "/proc", "/sys/fs/x"])
def test_a_state_dir_on_a_kernel_file_system_is_refused(where: str) -> None:
    (problem,) = preflight.state_dir_config_problems(where)
    assert "kernel file system" in problem


def test_a_linked_entry_dir_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir(mode=0o755)
    (tmp_path / "redis").symlink_to(target)
    with pytest.raises(StateDirError, match="symlink"):
        private_subdir(tmp_path, "redis")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(private_subdir(tmp_path, "metrics")).st_mode) == 0o700


def test_only_processes_of_this_uid_are_leftovers() -> None:
    assert is_ours((1000, 1000, 1000), 1000)
    assert not is_ours((65534, 65534, 65534), 0)
    assert not is_ours((1000, 0, 0), 0) and not is_ours((0, 1000, 1000), 0)
    assert not is_ours(None, 0)


def test_a_missing_state_dir_whose_parent_we_cannot_write_fails_config_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert preflight.state_dir_config_problems(str(tmp_path / "new" / "state")) == []
    # As another user would find it (root may write anywhere): the nearest existing parent is not writable.
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: Path(path) != tmp_path)
    (problem,) = preflight.state_dir_config_problems(str(tmp_path / "new" / "state"))
    assert problem.startswith("server.state_dir: ") and f"cannot be created in {tmp_path}" in problem
