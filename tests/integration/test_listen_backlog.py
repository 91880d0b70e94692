"""Each worker's listener keeps the configured backlog (aiohttp's SockSite would shrink it to 128)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import ClusterProcess, http_get, wait_for

pytestmark = pytest.mark.integration


def listen_backlog(port: int) -> int | None:
    """Send-Q of the listening socket on ``port`` as `ss -ltn` shows it (the accept queue's size)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "LISTEN":
            return int(fields[2])
    return None


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_the_configured_backlog_reaches_the_listener(tmp_path: Path, event_loop: str) -> None:
    cluster = ClusterProcess(tmp_path / "state", workers=1, env={
        "CLUSTER_SERVER_BACKLOG": "1000", "CLUSTER_SERVER_EVENT_LOOP": event_loop})
    try:
        cluster.start()
        assert http_get(f"{cluster.url}/ping")[0] == 200
        assert wait_for(lambda: listen_backlog(cluster.port) == 1000, 30, 0.2, "the listen backlog to be 1000")
    finally:
        cluster.close()
