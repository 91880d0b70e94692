"""Jobs that use the replica router from their context (`current_job().db`)."""

from __future__ import annotations

from cluster.queues import current_job, job


@job(priority="high")
async def write_then_read(value: str) -> dict[str, object]:
    """Write a row, then read it back: read-your-writes inside one job."""
    db = current_job().db
    assert db is not None
    async with db.write() as conn:
        await conn.execute("INSERT INTO job_notes (value) VALUES (%s)", (value,))
    async with db.read() as conn:
        row = await (await conn.execute(
            "SELECT count(*), inet_server_port() FROM job_notes WHERE value = %s", (value,))).fetchone()
    return {"found": row[0], "port": row[1]}


@job(priority="high")
async def read_note(value: str) -> dict[str, object]:
    """Read a row an earlier request wrote (the request's token came with the job)."""
    db = current_job().db
    assert db is not None
    async with db.read() as conn:
        row = await (await conn.execute(
            "SELECT count(*), inet_server_port() FROM job_notes WHERE value = %s", (value,))).fetchone()
    return {"found": row[0], "port": row[1]}
