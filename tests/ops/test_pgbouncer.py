"""PgBouncer in transaction pooling in front of a real PostgreSQL: the router works through it with
database.prepare_threshold = None, and fails without it (server-side prepared statements do not
survive a change of server connection)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.config.settings import DatabaseSettings, Settings
from cluster.db import Router
from cluster.db.router import router_from_settings
from tests.support import ROOT, free_port, wait_for

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _pg_cluster(*args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "pg-cluster"), *args],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _bouncer_config(directory: Path, pg_port: int, port: int) -> Path:
    ini = directory / "pgbouncer.ini"
    (directory / "userlist.txt").write_text('"postgres" ""\n')
    ini.write_text(f"""[databases]
* = host=127.0.0.1 port={pg_port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,options
logfile = {directory}/pgbouncer.log
""")
    return ini


async def _queries(router: Router, tasks: int = 4, each: int = 30) -> list[int]:
    """Run `tasks` concurrent writers; on failure raise an ExceptionGroup of every task's error (the
    first task to fail takes the host out, so the others fail with the router's own refusal)."""
    async def one(n: int) -> list[int]:
        out = []
        for i in range(each):
            async with router.write() as conn:
                cur = await conn.execute("select %s::int + 1", (n * 1000 + i,))
                out.append((await cur.fetchone())[0])
        return out

    results = await asyncio.gather(*(one(n) for n in range(tasks)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise ExceptionGroup("writer tasks failed", errors)
    return [v for r in results for v in r]  # type: ignore[union-attr]


async def _run(url: str, prepare_threshold: int | None) -> list[int]:
    settings = Settings(database=DatabaseSettings(url=url, pool_size=4, prepare_threshold=prepare_threshold,
                                                  health_check_interval=1.0))
    router = router_from_settings(settings)
    assert router is not None
    await router.start()
    try:
        return await _queries(router)
    finally:
        await router.close()


@pytest.mark.skipif(shutil.which("pgbouncer") is None or not (PG_BIN / "initdb").exists(),
                    reason="pgbouncer and PostgreSQL 15 are needed (scripts/install-system-deps)")
def test_router_through_pgbouncer_transaction_pooling() -> None:
    pg = json.loads(_pg_cluster("start", "--replicas", "0"))
    directory = Path(pg["dir"])
    bouncer: subprocess.Popen[bytes] | None = None
    try:
        bdir = directory / "pgbouncer"
        bdir.mkdir()
        port = free_port()
        ini = _bouncer_config(bdir, pg["primary"]["port"], port)
        shutil.chown(bdir, "postgres")
        for path in bdir.iterdir():
            shutil.chown(path, "postgres")
        argv = ["pgbouncer", str(ini)]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            argv = ["runuser", "-u", "postgres", "--", *argv]
        bouncer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        wait_for(lambda: subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                        capture_output=True).returncode == 0, 30, 0.2, "pgbouncer")

        values = asyncio.run(_run(url, None))
        assert sorted(values) == sorted(n * 1000 + i + 1 for n in range(4) for i in range(30))

        # the control: psycopg's prepared statements break under transaction pooling
        with pytest.raises(ExceptionGroup) as failed:
            asyncio.run(_run(url, 0))
        assert any("prepared statement" in str(e) for e in failed.value.exceptions), failed.value.exceptions
    finally:
        if bouncer is not None:
            bouncer.terminate()
            bouncer.wait(10)
        _pg_cluster("stop", "--dir", str(directory))
